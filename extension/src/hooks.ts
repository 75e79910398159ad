/** React hooks the views share: nothing here touches the DOM or JupyterLab, so views stay testable in node. */

import type { ISignal } from '@lumino/signaling';
import * as React from 'react';

/** Re-render the calling component whenever ``owner.changed`` fires; returns the re-render, for timers. */
export function useChanged(owner: { changed: ISignal<unknown, void> }): () => void {
  const [, rerender] = React.useReducer((n: number) => n + 1, 0);
  React.useEffect(() => {
    const onChange = () => rerender();
    owner.changed.connect(onChange);
    return () => {
      owner.changed.disconnect(onChange);
    };
  }, [owner]);
  return rerender;
}
