/**
 * `LogView`: the end of a run's train.log in the main area, for runs inside the server root or
 * not; it follows the log while the run trains. Plain React; the log is a text node.
 */

import * as React from 'react';

import { IRunLog } from './api';

export function LogView({ log }: { log: IRunLog }): JSX.Element {
  const end = React.useRef<HTMLPreElement>(null);
  React.useEffect(() => {
    end.current?.scrollTo?.({ top: end.current.scrollHeight }); // the newest lines in view
  }, [log.text]);
  return (
    <div className="ftkit-LogView">
      <div className="ftkit-LogView-path" title={log.path}>
        {log.path} <span className="ftkit-Muted">(last {log.lines} lines{log.status === 'running' ? ', following' : ''})</span>
      </div>
      <pre ref={end} className="ftkit-LogText">
        {log.text || 'Nothing logged yet.'}
      </pre>
    </div>
  );
}
