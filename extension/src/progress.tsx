/**
 * `RunProgress`: a run's progress line in the panel. Before the first step it names the phase the
 * worker is in (starting, reading data n/N, tokenising n/N, loading model, first step), so the
 * first second after a launch already shows something; then the step bar. Plain React (no
 * JupyterLab imports), so it renders in tests without a browser.
 */

import * as React from 'react';

import { IRunSummary } from './api';
import { formatPhase } from './format';

export function RunProgress({ run }: { run: IRunSummary }): JSX.Element | null {
  const active = run.status === 'running' || run.status === 'queued';
  const phase = active ? run.phase ?? null : null;
  if (phase) {
    const counted = !!phase.total && phase.total > 0 && phase.done !== null;
    const fraction = counted ? Math.min(1, (phase.done as number) / (phase.total as number)) : 0;
    const text = formatPhase(phase);
    return (
      <div
        className="ftkit-Progress ftkit-Phase"
        role="progressbar"
        data-phase={phase.name}
        aria-valuemin={0}
        aria-valuemax={counted ? (phase.total as number) : undefined}
        aria-valuenow={counted ? (phase.done as number) : undefined}
        aria-valuetext={text}
        title={text}
      >
        <div className="ftkit-Progress-bar" style={{ width: `${(fraction * 100).toFixed(1)}%` }} />
        <span className="ftkit-Progress-label">{text}</span>
      </div>
    );
  }
  if (run.status !== 'running') {
    return null;
  }
  const { step, total_steps } = run.progress;
  const fraction = total_steps ? Math.min(1, step / total_steps) : 0;
  return (
    <div
      className="ftkit-Progress"
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={total_steps ?? undefined}
      aria-valuenow={step}
      title={`step ${step} of ${total_steps ?? '?'}`}
    >
      <div className="ftkit-Progress-bar" style={{ width: `${(fraction * 100).toFixed(1)}%` }} />
      <span className="ftkit-Progress-label">{total_steps ? `${step}/${total_steps}` : `step ${step}`}</span>
    </div>
  );
}
