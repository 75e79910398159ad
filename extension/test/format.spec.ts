/** Formatting and the load-checkpoint snippet. */

import { describe, expect, it } from 'vitest';

import { formatBytes, formatDuration, formatMetric, loadSnippet } from '../src/format';

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

  it('writes a snippet that loads the checkpoint', () => {
    expect(loadSnippet('/runs/r1/checkpoint-10')).toBe(
      'from ftkit.engine.inference import Predictor\n' +
        'predictor = Predictor.from_checkpoint("/runs/r1/checkpoint-10")'
    );
  });

  it('keeps quotes and backslashes in a path inside the Python string', () => {
    const snippet = loadSnippet('/runs/a"b\\c/checkpoint-1');
    expect(snippet).toContain('from_checkpoint("/runs/a\\"b\\\\c/checkpoint-1")');
  });

  it.each(['ner', 'classification', 'toString', null, undefined])('keeps the prediction snippet for task %s', task => {
    expect(loadSnippet('/runs/r1/checkpoint-10', task)).toBe(loadSnippet('/runs/r1/checkpoint-10'));
  });

  it("loads an sft run's checkpoint for generation", () => {
    expect(loadSnippet('/runs/r2/checkpoint-60', 'sft')).toBe(
      'from ftkit.engine.generation import Generator\n' +
        'generator = Generator.load("/runs/r2/checkpoint-60")\n' +
        'print(generator.generate("Hello! What can you do?", max_new_tokens=64))'
    );
    expect(loadSnippet('/runs/a"b\\c/checkpoint-1', 'sft')).toContain('Generator.load("/runs/a\\"b\\\\c/checkpoint-1")');
  });
});
