/**
 * The ftkit JupyterLab plugin: a "Fine-tuning runs" tab in the left side panel, restored with the
 * layout, and the commands behind its buttons (also in the command palette under "Fine-tuning").
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Clipboard,
  CommandToolbarButton,
  Dialog,
  ICommandPalette,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon, SidePanel, refreshIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { ServerRunsApi } from './client';
import { RunsModel } from './model';
import { CommandIDs, RunsPanel } from './panel';

export { RunsModel } from './model';

const PANEL_ID = 'ftkit-runs';
const CATEGORY = 'Fine-tuning';

const runsIcon = new LabIcon({
  name: 'ftkit:runs',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M3 17h4v4H3zm7-6h4v10h-4zm7-8h4v18h-4z"/></svg>'
});

interface IRunArgs {
  runId?: string;
  step?: number;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'ftkit:runs-panel',
  description: 'Fine-tuning runs and checkpoints in the left side panel.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, INotebookTracker, IDocumentManager],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    docManager: IDocumentManager | null
  ) => {
    const { commands, shell } = app;
    const api = new ServerRunsApi();
    const panel = new SidePanel();
    const model = new RunsModel({ api, isActive: () => panel.isVisible });

    const view = new RunsPanel(model, commands);
    view.title.label = 'Runs';
    panel.id = PANEL_ID;
    panel.addClass('ftkit-SidePanel');
    panel.title.icon = runsIcon;
    panel.title.caption = 'Fine-tuning runs';
    const heading = new Widget();
    heading.addClass('ftkit-Heading');
    heading.node.textContent = 'Fine-tuning runs';
    panel.header.addWidget(heading);
    panel.toolbar.addItem(
      'refresh',
      new CommandToolbarButton({ commands, id: CommandIDs.refresh, label: '', caption: 'Refresh runs' })
    );
    panel.addWidget(view);
    panel.disposed.connect(() => model.dispose());
    shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, PANEL_ID);

    /** The run (and checkpoint) a command acts on: its arguments, else the panel's selection. */
    const target = (args: IRunArgs) => {
      const runId = args.runId ?? model.selected?.id;
      if (!runId) {
        return null;
      }
      const run = model.runs.find(r => r.id === runId);
      const checkpoints = model.detail(runId)?.checkpoints ?? [];
      const checkpoint =
        args.step !== undefined
          ? checkpoints.find(c => c.step === args.step)
          : checkpoints[checkpoints.length - 1];
      return { runId, run, checkpoint, name: run?.name ?? runId };
    };
    const report = (title: string) => (error: unknown) =>
      void showErrorMessage(title, error instanceof Error ? error.message : String(error));
    const confirm = async (title: string, body: string, label: string) => {
      const result = await showDialog({
        title,
        body,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })]
      });
      return result.button.accept;
    };

    commands.addCommand(CommandIDs.show, {
      label: 'Show Fine-tuning Runs',
      caption: 'Open the fine-tuning runs side panel',
      execute: () => shell.activateById(PANEL_ID)
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Fine-tuning Runs',
      icon: refreshIcon,
      execute: () => model.refresh()
    });
    commands.addCommand(CommandIDs.stop, {
      label: 'Stop Fine-tuning Run',
      caption: 'Ask the selected run to save a checkpoint and stop',
      isEnabled: args => {
        const run = target(args as IRunArgs)?.run;
        return !!run && (run.status === 'running' || run.status === 'queued');
      },
      execute: async args => {
        const t = target(args as IRunArgs);
        if (t) {
          await model.stop(t.runId).catch(report(`Could not stop ${t.name}`));
        }
      }
    });
    commands.addCommand(CommandIDs.deleteRun, {
      label: 'Delete Fine-tuning Run…',
      isEnabled: args => !!target(args as IRunArgs),
      execute: async args => {
        const t = target(args as IRunArgs);
        if (t && (await confirm('Delete run?', `Delete the run "${t.name}" with its checkpoints and logs? This cannot be undone.`, 'Delete'))) {
          await model.deleteRun(t.runId).catch(report(`Could not delete ${t.name}`));
        }
      }
    });
    commands.addCommand(CommandIDs.deleteCheckpoint, {
      label: 'Delete Checkpoint…',
      isEnabled: args => !!target(args as IRunArgs)?.checkpoint,
      execute: async args => {
        const t = target(args as IRunArgs);
        if (t?.checkpoint && (await confirm('Delete checkpoint?', `Delete checkpoint ${t.checkpoint.step} of "${t.name}"? This cannot be undone.`, 'Delete'))) {
          await model.deleteCheckpoint(t.runId, t.checkpoint.step).catch(report('Could not delete the checkpoint'));
        }
      }
    });
    commands.addCommand(CommandIDs.copySnippet, {
      label: 'Copy Code to Load Checkpoint',
      isEnabled: args => !!target(args as IRunArgs)?.checkpoint?.snippet,
      execute: args => {
        const t = target(args as IRunArgs);
        if (t?.checkpoint?.snippet) {
          Clipboard.copyToSystem(t.checkpoint.snippet);
        }
      }
    });
    commands.addCommand(CommandIDs.insertSnippet, {
      label: 'Insert Code to Load Checkpoint into Notebook',
      isEnabled: args => !!target(args as IRunArgs)?.checkpoint?.snippet && !!notebooks?.currentWidget,
      execute: args => {
        const t = target(args as IRunArgs);
        const notebook = notebooks?.currentWidget;
        if (!t?.checkpoint?.snippet || !notebook) {
          return;
        }
        NotebookActions.insertBelow(notebook.content);
        notebook.content.activeCell?.model.sharedModel.setSource(t.checkpoint.snippet);
        shell.activateById(notebook.id);
      }
    });
    commands.addCommand(CommandIDs.openConfig, {
      label: 'Open Fine-tuning Run Config',
      isEnabled: args => !!target(args as IRunArgs),
      execute: async args => {
        const t = target(args as IRunArgs);
        if (!t) {
          return;
        }
        try {
          const config = await api.config(t.runId);
          if (config.server_path !== null && docManager) {
            docManager.openOrReveal(config.server_path);
          } else {
            await showDialog({
              title: `Config of ${t.name}`,
              body: React.createElement('pre', { className: 'ftkit-ConfigText', title: config.path }, config.text),
              buttons: [Dialog.okButton({ label: 'Close' })]
            });
          }
        } catch (error) {
          report(`Could not open the config of ${t.name}`)(error);
        }
      }
    });

    for (const command of Object.values(CommandIDs)) {
      palette?.addItem({ command, category: CATEGORY });
    }
    model.changed.connect(() => commands.notifyCommandChanged());
  }
};

export default plugin;
