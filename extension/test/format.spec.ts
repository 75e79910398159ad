/** Formatting of sizes, durations and metrics. */

import { describe, expect, it } from 'vitest';

import { emptyText, formatBytes, formatDuration, formatMetric, formatValue, liveText, runSubtitle } from '../src/format';

describe('format', () => {
  it.each([
    [null, '—'],
    [42.7, '42s'],
    [185, '3m 05s'],
    [3720, '1h 02m']
  ])('formats a duration of %s seconds as %s', (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
  });

  it.each([
    [512, '512 B'],
    [1536, '1.5 KB'],
    [23.4 * 1024 * 1024, '23.4 MB']
  ])('formats %s bytes as %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  it('shows metrics with four decimals and counts as they are', () => {
    expect(formatMetric(0.91234567)).toBe('0.9123');
    expect(formatMetric(3)).toBe('3');
    expect(formatMetric(null)).toBe('—');
  });
});

describe('run text', () => {
  it('names what a run trains, leaving out what it does not say', () => {
    expect(runSubtitle({ task: 'ner', model: 'default', adapter: 'lora' })).toBe('ner · default · lora');
    expect(runSubtitle({ task: 'sft', model: null, adapter: 'lora' })).toBe('sft · lora');
  });

  it("gives a training run's loss and time left once known", () => {
    expect(liveText({ loss: 0.43216, eta_seconds: 185 })).toBe('loss 0.4322 · ETA 3m 05s');
    expect(liveText({ loss: null, eta_seconds: 42 })).toBe('ETA 42s');
    expect(liveText({ loss: null, eta_seconds: null })).toBe('');
  });

  it('says a search found nothing rather than that there are no runs', () => {
    expect(emptyText({ q: '  lora ', status: [] })).toBe('No runs match “lora”');
    expect(emptyText({ q: 'lora', status: ['failed'] })).toBe('No failed runs match “lora”');
    expect(emptyText({ q: '', status: ['running'] })).toBe('No running runs');
    expect(emptyText({ q: '', status: [] })).toBe('No runs yet');
  });

  it('writes config values as they are, lists as JSON and nothing as a dash', () => {
    expect([formatValue(5e-5), formatValue('lora'), formatValue([8, 16]), formatValue(null), formatValue(false)]).toEqual([
      '0.00005',
      'lora',
      '[8,16]',
      '—',
      'false'
    ]);
  });
});
