/** What the panel says about a run and its checkpoints, and the actions it offers (the row and the palette alike). */

import { describe, expect, it } from 'vitest';

import { ICheckpoint, IPhase, RunStatus } from '../src/api';
import {
  canDelete,
  checkpointHolds,
  checkpointRoles,
  displayStatus,
  hasErrors,
  runTooltip,
  statusChipLabel
} from '../src/run-state';
import { runSummary } from './fixtures';

const phase = (name: string): IPhase => ({ name, done: null, total: null, detail: null });

function checkpoint(step: number, fields: Partial<ICheckpoint> = {}): ICheckpoint {
  return { step, path: `checkpoint-${step}`, abs_path: `/runs/r1/checkpoint-${step}`, size: 100, adapter_only: false, snippet: null, metrics: {}, ...fields };
}

describe('displayStatus', () => {
  it('calls a queued run whose worker already imports libraries or reads data "starting"', () => {
    expect(displayStatus(runSummary({ id: 'r1', status: 'queued', phase: phase('starting') }))).toBe('starting');
    expect(displayStatus(runSummary({ id: 'r1', status: 'queued', phase: phase('reading data') }))).toBe('starting');
  });

  it('keeps "queued" for a run waiting for a device or without a phase, and every other status as stored', () => {
    expect(displayStatus(runSummary({ id: 'r1', status: 'queued', phase: phase('waiting for device') }))).toBe('queued');
    expect(displayStatus(runSummary({ id: 'r1', status: 'queued', phase: null }))).toBe('queued');
    expect(displayStatus(runSummary({ id: 'r1', status: 'running', phase: phase('tokenising') }))).toBe('running');
  });

  it('names the starting runs in the queued chip that counts them', () => {
    expect(statusChipLabel('queued')).toBe('queued/starting');
    expect(statusChipLabel('failed')).toBe('failed');
  });
});

describe('canDelete', () => {
  it.each<[RunStatus, boolean]>([
    ['queued', false],
    ['running', false],
    ['completed', true],
    ['failed', true],
    ['stopped', true]
  ])('a %s run may be deleted: %s', (status, allowed) => {
    expect(canDelete(runSummary({ id: 'r1', status }))).toBe(allowed);
  });

  it('refuses a run it does not know', () => {
    expect(canDelete(undefined)).toBe(false);
  });
});

describe('hasErrors', () => {
  it('offers the errors of a finished run with saved test predictions only', () => {
    expect(hasErrors(runSummary({ id: 'r1', predictions: ['test'] }))).toBe(true);
    expect(hasErrors(runSummary({ id: 'r1', predictions: [] }))).toBe(false); // an SFT run without a test split
    expect(hasErrors(runSummary({ id: 'r1', predictions: ['validation'] }))).toBe(false);
    expect(hasErrors(runSummary({ id: 'r1', status: 'running', predictions: ['test'] }))).toBe(false); // still writing them
    expect(hasErrors(undefined)).toBe(false);
  });
});

describe('runTooltip', () => {
  it('gives the name first, then the id', () => {
    expect(runTooltip(runSummary({ id: '20261207-031056-96940d', name: 'ner-conll-lora' }))).toBe('ner-conll-lora (20261207-031056-96940d)');
  });
});

describe('checkpoints', () => {
  it('say what each holds: with the optimizer state it can resume, else the weights alone', () => {
    expect(checkpointHolds(checkpoint(8, { resumable: true }))).toBe('weights + optimizer state: can resume');
    expect(checkpointHolds(checkpoint(16, { resumable: false }))).toBe('weights only');
    expect(checkpointHolds(checkpoint(16, { adapter_only: true, resumable: true }))).toBe('adapter weights + optimizer state: can resume');
  });

  it('mark the best and the last, which may be one', () => {
    const saved = [checkpoint(8), checkpoint(16)];
    expect(saved.map(c => checkpointRoles(c.step, 8, saved))).toEqual([['best'], ['last']]);
    expect(saved.map(c => checkpointRoles(c.step, 16, saved))).toEqual([[], ['best', 'last']]);
    expect(saved.map(c => checkpointRoles(c.step, null, saved))).toEqual([[], ['last']]);
  });
});
