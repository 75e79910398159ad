/**
 * The Export dialog: for a GGUF export, the weights (f16 first, the default) and whether to write an
 * Ollama Modelfile beside the file; an ONNX export has nothing to choose, so it only asks to confirm.
 */

import { Dialog, InputDialog, showDialog } from '@jupyterlab/apputils';

import { IExportRequest } from './api';
import { quantLabel } from './exports';

export async function askExport(options: {
  runName: string;
  checkpoint: string;
  format: string;
  quants: readonly string[];
}): Promise<IExportRequest | null> {
  const { runName, checkpoint, format, quants } = options;
  const what = `${checkpoint} of "${runName}"`;
  if (quants.length) {
    const labels = quants.map(quantLabel);
    const result = await InputDialog.getItem({
      title: `Export ${checkpoint} to ${format.toUpperCase()}`,
      label: `Weights of ${what} (the export is then checked against the model):`,
      items: labels,
      current: 0,
      okLabel: 'Export',
      checkbox: {
        label: 'Also write an Ollama Modelfile',
        caption: 'A Modelfile beside the GGUF file, with the chat template, for `ollama create`',
        checked: false
      }
    });
    const index = result.value === null ? -1 : labels.indexOf(result.value);
    if (!result.button.accept || index < 0) {
      return null;
    }
    return { checkpoint, quant: quants[index], ollama: !!result.isChecked };
  }
  const result = await showDialog({
    title: `Export ${checkpoint} to ${format.toUpperCase()}?`,
    body: `Write ${what} as one ${format.toUpperCase()} file, then check that it answers as the model does.`,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Export' })]
  });
  return result.button.accept ? { checkpoint } : null;
}
