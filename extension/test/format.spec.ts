/** Formatting of sizes, durations and metrics. */

import { describe, expect, it } from 'vitest';

import { formatBytes, formatDuration, formatMetric } from '../src/format';

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
