/** Remote: a main-area view's data, loaded once per burst of changes, kept through a failed load. */

import { describe, expect, it } from 'vitest';

import { Remote } from '../src/remote';

/** A load that resolves when told to, counting its calls. */
function controlled() {
  const pending: ((value: number) => void)[] = [];
  let calls = 0;
  return {
    load: () => {
      calls++;
      return new Promise<number>(resolve => pending.push(resolve));
    },
    resolve: (value: number) => pending.shift()!(value),
    get calls() {
      return calls;
    }
  };
}

const tick = () => new Promise(resolve => setTimeout(resolve, 0));

describe('Remote', () => {
  it('runs one more load after the current one however many refreshes come meanwhile', async () => {
    const server = controlled();
    const remote = new Remote(server.load, 'view');
    expect(remote.loading).toBe(true);
    const first = remote.refresh();
    void remote.refresh();
    void remote.refresh();
    server.resolve(1);
    await tick();
    expect(remote.data).toBe(1);
    expect(server.calls).toBe(2);
    server.resolve(2);
    await first;
    expect([remote.data, server.calls]).toEqual([2, 2]);
  });

  it('keeps the last data and says why when a load fails', async () => {
    let fail = false;
    const remote = new Remote(async () => {
      if (fail) {
        throw new Error('no saved predictions');
      }
      return 'report';
    }, 'errors');
    await remote.refresh();
    fail = true;
    await remote.refresh();
    expect([remote.data, remote.error]).toEqual(['report', 'no saved predictions']);
    fail = false;
    await remote.refresh();
    expect(remote.error).toBeNull();
  });

  it('signals each finished load until disposed', async () => {
    const remote = new Remote(async () => 1, 'view');
    let changes = 0;
    remote.changed.connect(() => changes++);
    await remote.refresh();
    remote.dispose();
    await remote.refresh();
    expect([changes, remote.isDisposed]).toEqual([1, true]);
  });
});
