/** What the specs build runs from: a finished run's summary, with the fields a spec cares about given. */

import { IRunSummary } from '../src/api';

export function runSummary(fields: Partial<IRunSummary> & Pick<IRunSummary, 'id'>): IRunSummary {
  return {
    name: `run ${fields.id}`,
    status: 'completed',
    task: 'sft',
    model: 'default-causal',
    adapter: 'lora',
    pid: null,
    error: null,
    created: 1000,
    started: 1000,
    ended: 1100,
    duration: 100,
    progress: { step: 60, total_steps: 60, epoch: 1, samples_per_second: null, eta_seconds: null, loss: 0.3 },
    best_metric: null,
    checkpoint_count: 1,
    ...fields
  };
}
