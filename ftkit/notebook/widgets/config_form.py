"""ConfigForm: every config field as a form control, validated as you type, with a Launch button.

Controls, labels and tooltips come from `ftkit.config.schema_fields()` metadata, and values are
read the way a YAML file or a ``%finetune`` flag would be read (`ftkit.config.parse_value`), so
the Config the form launches is the one the YAML or magic path builds for the same choices.
A field left at its default follows the task: choosing another task shows that task's defaults
(its adapter, say), and only the fields that differ from the chosen task's defaults are "changes";
fields the chosen task does not use are hidden. Problems show at their field, named by its label,
once the user has typed there or pressed Launch; data files and model folders must exist
(`ftkit.config.missing_paths`, the check `ftkit.runs.start` makes too).
"""

from __future__ import annotations

import functools
import re
import typing
from typing import Any, Callable, Mapping

import ipywidgets as widgets

from ...config import BUILTIN_MODELS, Config, check_trainable, load_config, missing_paths, parse_value, schema_fields
from ...rendering import escape
from ...errors import ConfigError
from ...tasks import TASK_NAMES, get_task

MAIN_SECTIONS = {
    "Model and data": ["task", "model", "name", "data.train", "data.validation", "data.test"],
    "Adapter": ["adapter.kind", "adapter.r", "adapter.alpha", "adapter.dropout", "adapter.target_modules"],
    "Hyperparameters": ["training.epochs", "training.learning_rate", "training.batch_size", "training.max_seq_length",
                        "training.warmup", "training.weight_decay", "training.lr_scheduler", "training.max_steps",
                        "training.max_train_samples", "training.seed"],
}
LORA_FIELDS = ("adapter.r", "adapter.alpha", "adapter.dropout", "adapter.target_modules")
LABELS = {"data.train": "train data", "data.validation": "validation data", "data.test": "test data",
          "adapter.kind": "adapter", "adapter.r": "LoRA rank (r)", "adapter.alpha": "LoRA alpha",
          "adapter.dropout": "LoRA dropout", "adapter.target_modules": "LoRA target modules"}
# What an empty choice means, in words: a dropdown never offers a blank or a bare "(guess)".
AUTO_CHOICES = {"data.format": "auto (from the file name)", "adapter.kind": "auto (the task's default)",
                "training.train_on": "auto (from the data's layout)"}
LABEL_SET_FIELDS = ("data.labels",)  # shown for tasks with a label set (`Task.label_column`)
_QUOTED_KEY = re.compile(r"'([a-z_]+(?:\.[a-z_]+)?)'")
_EMPTY_MEANS = re.compile(r"\(default: ([^)]*)\)|[Ww]hen empty, ([^;.]*)")  # what a field's help says empty means
_NOTE_STYLE = "color:#6b7280;font-size:12px"


class ConfigForm(widgets.VBox):
    """A fine-tuning config as a form: ``form.config`` is the Config, ``form.run`` the launched Run."""

    def __init__(self, config: Config | Mapping[str, Any] | str | None = None, **kwargs: Any):
        self._defaults = _flatten(Config().to_dict())
        self._hints = {key: (hint, field) for key, hint, field in schema_fields()}
        initial = self._initial_values(config)
        # Fields the user set (typed, or named in a given mapping): a task switch leaves them as they are.
        self._touched = set(_flatten(config)) if isinstance(config, Mapping) else set()
        self._following_task = False
        self._launch_tried = False
        self.fields: dict[str, widgets.ValueWidget] = {}
        self.field_errors: dict[str, widgets.HTML] = {}
        self._rows: dict[str, widgets.Box] = {}
        for key, (hint, field) in self._hints.items():
            self.fields[key] = _control(key, hint, field, initial[key])
            self.field_errors[key] = widgets.HTML(layout=widgets.Layout(display="none", margin="0 0 0 190px"))
            self._rows[key] = widgets.VBox([self.fields[key], self.field_errors[key]])
            self.fields[key].observe(functools.partial(self._edited, key), names="value")
        self.model_note = widgets.HTML(layout=widgets.Layout(margin="0 0 0 190px"))  # what a built-in model is
        self._rows["model"].children = (self.fields["model"], self.model_note, self.field_errors["model"])
        self.run: Any = None
        self._launch_callbacks: list[Callable[[Any], None]] = []

        self.status = widgets.HTML()
        self.launch_button = widgets.Button(description="Launch", icon="play", button_style="success",
                                            tooltip="Start fine-tuning in a separate process")
        self.copy_magic_button = widgets.Button(description="Copy as %%finetune", icon="copy",
                                                layout=widgets.Layout(width="auto"))
        self.copy_yaml_button = widgets.Button(description="Copy as YAML", icon="copy", layout=widgets.Layout(width="auto"))
        self.export_box = widgets.Textarea(layout=widgets.Layout(width="100%", height="200px", display="none"))
        self.output = widgets.Output()
        self.launch_button.on_click(lambda _: self.launch())
        self.copy_magic_button.on_click(lambda _: self._export(self.to_magic()))
        self.copy_yaml_button.on_click(lambda _: self._export(self.to_yaml()))

        shown = [key for keys in MAIN_SECTIONS.values() for key in keys]
        advanced: dict[str, list[str]] = {}
        for key in self.fields:
            if key not in shown:
                advanced.setdefault(key.rpartition(".")[0] or "run", []).append(key)
        sections = [widgets.VBox([widgets.HTML(f"<b>{title}</b>"), *(self._rows[k] for k in keys)])
                    for title, keys in MAIN_SECTIONS.items()]
        more = widgets.Accordion([widgets.VBox([self._rows[k] for k in keys]) for keys in advanced.values()],
                                 titles=[f"more {section} options" for section in advanced])
        buttons = widgets.HBox([self.launch_button, self.copy_magic_button, self.copy_yaml_button])
        super().__init__([*sections, more, buttons, self.status, self.export_box, self.output], **kwargs)
        self._changed()

    def _initial_values(self, config: Config | Mapping[str, Any] | str | None) -> dict[str, Any]:
        if config is None:
            return dict(self._defaults)
        try:
            return _flatten(load_config(config).to_dict())
        except ConfigError:
            if not isinstance(config, Mapping):
                raise
            values = {**self._defaults, **_flatten(config)}
            if set(values) != set(self._defaults) or not all(self._fits_control(k, v) for k, v in values.items()):
                raise  # an unknown key or choice has no control to show it in
            return values  # a bad value shows at its field, as if it had been typed

    def _fits_control(self, key: str, value: Any) -> bool:
        hint, field = self._hints[key]
        choices = field.metadata.get("choices")
        return not choices or value in choices or (value is None and type(None) in typing.get_args(hint))

    # ----- values --------------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """Every field as the config reads it (dotted keys)."""
        return {key: _read(control, *self._hints[key]) for key, control in self.fields.items()}

    def changes(self) -> dict[str, Any]:
        """The fields that differ from the chosen task's defaults: what the YAML and the magic need to say."""
        values = self.values()
        defaults = {**_task_defaults(values["task"]), "task": self._defaults["task"]}
        return {key: value for key, value in values.items() if value != defaults[key]}

    @property
    def config(self) -> Config:
        """The Config these choices make; raises ConfigError while a field is invalid."""
        return load_config(None, overrides=self.changes())

    def to_yaml(self) -> str:
        import yaml

        nested: dict[str, Any] = {}
        for key, value in self.changes().items():
            *sections, leaf = key.split(".")
            node = nested
            for section in sections:
                node = node.setdefault(section, {})
            node[leaf] = value
        return yaml.safe_dump(nested, sort_keys=False) if nested else "{}\n"

    def to_magic(self, variable: str = "run") -> str:
        """A ``%%finetune`` cell that launches the same run."""
        return f"%%finetune -o {variable}\n{self.to_yaml()}"

    # ----- validation as you type -------------------------------------------------------------------
    def _edited(self, key: str, change: Any) -> None:
        if self._following_task:
            return  # one of the task's defaults being shown; `_follow_task` validates once at the end
        self._touched.add(key)
        if key == "task":
            self._follow_task(change["old"], change["new"])
        self._changed()

    def _follow_task(self, old: str, new: str) -> None:
        """Show the new task's default in each field the user has not set that still shows the old one's."""
        before, after = _task_defaults(old), _task_defaults(new)
        values = self.values()
        self._following_task = True
        try:
            for key, value in after.items():
                if key not in self._touched and values[key] == before[key] != value:
                    _show(self.fields[key], value)
        finally:
            self._following_task = False

    def _changed(self) -> None:
        task, adapter = get_task(self.fields["task"].value), self.fields["adapter.kind"].value
        for key in LORA_FIELDS:
            self._show_row(key, adapter == "lora")
        # Options that mean something only for some tasks (each task declares its own) show for those.
        shown = set(task.form_fields)
        for key in {key for name in TASK_NAMES for key in get_task(name).form_fields}:
            self._show_row(key, key in shown)
        for key in LABEL_SET_FIELDS:
            self._show_row(key, task.label_column is not None)
        self.fields["training.learning_rate"].placeholder = f"default: {_default_learning_rate(task.name, adapter)}"
        self.model_note.value = _model_note(self.fields["model"].value.strip(), task.default_model)
        self.validate()

    def _show_row(self, key: str, shown: bool) -> None:
        self._rows[key].layout.display = None if shown else "none"

    def validate(self) -> str | None:
        """The first problem (None when the config is valid and its paths exist). Each shows next to its field,
        in the words of the field's label, once the user has typed there or pressed Launch; before that the
        status line says, in grey, what launching still needs."""
        for box in self.field_errors.values():
            box.layout.display = "none"
        config, problems = self._problems()
        if config is not None and not problems:
            self.status.value = f'<span style="color:#16a34a">ready: {escape(config.run_name)}</span>'
            self.launch_button.disabled = False
            return None
        said = {key: message for key, message in problems.items()
                if key is None or key in self._touched or self._launch_tried}
        for key, message in said.items():
            if key is not None:
                box = self.field_errors[key]
                box.value = f'<span style="color:#dc2626;font-size:12px">{escape(self._worded(message))}</span>'
                box.layout.display = None
        if said:
            self.status.value = f'<span style="color:#dc2626">{escape(self._worded(next(iter(said.values()))))}</span>'
        else:
            needed = self._worded(next(iter(problems.values())))
            self.status.value = f'<span style="{_NOTE_STYLE}">to launch: {escape(needed)}</span>'
        self.launch_button.disabled = True
        return next(iter(problems.values()))

    def _problems(self) -> tuple[Config | None, dict[str | None, str]]:
        """The config (None while it is invalid) and its problems: the field each names (None: no field) -> message."""
        try:
            config = self.config
            check_trainable(config)  # valid without training data, but a run would fail at once
        except ConfigError as exc:
            match = _QUOTED_KEY.search(str(exc))
            return None, {match.group(1) if match and match.group(1) in self.fields else None: str(exc)}
        return config, missing_paths(config)

    def _worded(self, message: str) -> str:
        """A config message with the fields it quotes by key (``'data.train'``) named by their labels."""
        return _QUOTED_KEY.sub(lambda m: _label(m.group(1)) if m.group(1) in self.fields else m.group(0), message)

    # ----- actions ----------------------------------------------------------------------------------
    def on_launch(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(run)`` after each launch."""
        self._launch_callbacks.append(callback)

    def launch(self) -> Any:
        """Start the run (in its own process) and show its monitor under the form."""
        from IPython.display import display

        from ... import runs
        from ..namespace import with_namespace_data

        self._launch_tried = True  # from now on every problem shows at its field
        if self.validate() is not None:
            return None
        self.run = runs.start(with_namespace_data(self.config))
        with self.output:
            self.output.clear_output()
            display(self.run)
        for callback in self._launch_callbacks:
            callback(self.run)
        return self.run

    def _export(self, text: str) -> None:
        # The kernel cannot reach the browser's clipboard: show the text ready to select and copy.
        self.export_box.value = text
        self.export_box.layout.display = None


@functools.cache
def _task_defaults(task: str) -> dict[str, Any]:
    """Every field's default for ``task`` (dotted keys), as the schema fills them in; read, never changed."""
    return _flatten(Config(task=task).to_dict())


@functools.cache
def _default_learning_rate(task: str, adapter: str | None) -> float:
    """The learning rate a run of ``task`` with ``adapter`` trains at when the field is left empty (the schema's)."""
    return Config.from_dict({"task": task, "adapter": {"kind": adapter}}).learning_rate


def _model_note(model: str, task_default: str) -> str:
    """What a built-in model name stands for ("default — MiniLM-L6 (encoder)"); nothing for a folder or hub id."""
    meant = BUILTIN_MODELS.get(task_default if model == "default" else model)
    return f'<span style="{_NOTE_STYLE}">{escape(model)} — {escape(meant)}</span>' if meant else ""


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _kinds(hint: Any) -> list[Any]:
    if typing.get_origin(hint) is list or not typing.get_args(hint):
        return [hint]
    return [k for k in typing.get_args(hint) if k is not type(None)]


def _control(key: str, hint: Any, field: Any, value: Any) -> widgets.ValueWidget:
    """The control for one field: a dropdown for choices, a checkbox for flags, else a text box."""
    common = {"description": _label(key), "tooltip": field.metadata.get("help", ""),
              "style": {"description_width": "180px"}, "layout": widgets.Layout(width="520px")}
    choices = field.metadata.get("choices")
    optional = type(None) in typing.get_args(hint)
    if choices:
        options = [(AUTO_CHOICES.get(key, "auto"), None)] + [(c, c) for c in choices] if optional else list(choices)
        return widgets.Dropdown(options=options, value=value, **common)
    if _kinds(hint) == [bool]:
        return widgets.Checkbox(value=bool(value), indent=True, **common)
    if key == "model":  # the built-in names listed, any folder or hub id typed
        return widgets.Combobox(value=_text(value), options=list(BUILTIN_MODELS), ensure_option=False,
                                continuous_update=True, **common)
    said = _EMPTY_MEANS.search(common["tooltip"])
    placeholder = f"default: {said.group(1) or said.group(2)}" if said else "optional" if optional else ""
    return widgets.Text(value=_text(value), placeholder=placeholder, continuous_update=True, **common)


def _label(key: str) -> str:
    """A field's label, as the form shows it and names it in messages."""
    return LABELS.get(key) or key.rsplit(".", 1)[-1].replace("_", " ")


def _show(control: widgets.ValueWidget, value: Any) -> None:
    """Put a config value into its control, as `_control` does for the first one."""
    control.value = _text(value) if isinstance(control, widgets.Text) else value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):  # YAML's flow style, which `_read` parses back
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


def _read(control: widgets.ValueWidget, hint: Any, field: Any) -> Any:
    """A control's value as the config reads it: text as YAML, except plain text fields."""
    if not isinstance(control, widgets.Text):
        return control.value
    text = control.value.strip()
    if not text:
        return None
    kinds = _kinds(hint)
    if typing.get_origin(kinds[0]) is list:
        return [item.strip() for item in text.split(",") if item.strip()]
    if kinds == [str]:
        return text  # names and paths stay as typed
    return parse_value(text)
