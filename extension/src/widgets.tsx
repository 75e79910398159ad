/**
 * `RemoteWidget`: a main-area view of a `Remote` (a comparison, a run's errors, its log), drawn
 * again after each load. Its failure shows above the last data it had, so a live view that loses
 * the server for a moment keeps what it showed.
 */

import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { Remote } from './remote';

export class RemoteWidget<T> extends ReactWidget {
  constructor(
    readonly remote: Remote<T>,
    private readonly view: (data: T) => JSX.Element
  ) {
    super();
    this.addClass('ftkit-MainView');
    remote.changed.connect(() => this.update(), this);
  }

  render(): JSX.Element {
    const { data, error } = this.remote;
    return (
      <>
        {error && (
          <div className="ftkit-Error" role="alert">
            {error}
          </div>
        )}
        {data !== null ? this.view(data) : !error && <div className="ftkit-Muted">Loading…</div>}
      </>
    );
  }

  dispose(): void {
    this.remote.dispose();
    super.dispose();
  }
}
