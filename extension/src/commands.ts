/**
 * The ids of the panel's commands: index.ts registers them (label, isEnabled, what they do), the
 * panel's buttons execute them, so a button and the command palette share one implementation.
 */

export namespace CommandIDs {
  export const show = 'ftkit:show-runs';
  export const refresh = 'ftkit:refresh-runs';
  export const stop = 'ftkit:stop-run';
  export const deleteRun = 'ftkit:delete-run';
  export const openConfig = 'ftkit:open-run-config';
  export const deleteCheckpoint = 'ftkit:delete-checkpoint';
  export const copySnippet = 'ftkit:copy-load-snippet';
  export const insertSnippet = 'ftkit:insert-load-snippet';
  export const compare = 'ftkit:compare-runs';
  export const openLog = 'ftkit:open-run-log';
  export const openErrors = 'ftkit:open-run-errors';
  export const openLabelIssues = 'ftkit:open-run-label-issues';
  export const openSweep = 'ftkit:open-sweep';
  export const exportCheckpoint = 'ftkit:export-checkpoint';
  export const stopExport = 'ftkit:stop-export';
}
