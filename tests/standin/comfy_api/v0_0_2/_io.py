"""Stand-in for `comfy_api.v0_0_2.io`: inputs, outputs, the Schema, ComfyNode and NodeOutput.

Only the parts the pack uses, with the real names and keyword arguments; `as_dict` leaves out
options that are None, as the real one does, and the V1 view (`INPUT_TYPES`, `RETURN_TYPES`, ...)
is built the same way (lists, not tuples; combos as "COMBO" with their `options`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from enum import Enum
from typing import Any


def _prune(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class classproperty:
    """A read-only property of the class (the real API exposes RETURN_TYPES & co. this way)."""

    def __init__(self, getter):
        self.getter = getter

    def __get__(self, instance, owner):
        return self.getter(owner)


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


class Input:
    io_type: str = None

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 extra_dict=None):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict if extra_dict is not None else {}

    def as_dict(self) -> dict:
        return _prune({"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip,
                       "lazy": self.lazy}) | _prune(self.extra_dict)

    def get_io_type(self) -> str:
        return self.io_type


class WidgetInput(Input):
    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 default: Any = None, socketless: bool = None, widget_type: str = None, force_input: bool = None,
                 extra_dict=None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def as_dict(self) -> dict:
        return super().as_dict() | _prune({"default": self.default, "socketless": self.socketless,
                                           "widgetType": self.widget_type, "forceInput": self.force_input})

    def get_io_type(self) -> str:
        return self.widget_type if self.widget_type is not None else super().get_io_type()


class Output:
    io_type: str = None

    def __init__(self, id: str = None, display_name: str = None, tooltip: str = None, is_output_list=False):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    def as_dict(self) -> dict:
        return _prune({"display_name": self.display_name, "tooltip": self.tooltip,
                       "is_output_list": self.is_output_list})

    def get_io_type(self) -> str:
        return self.io_type


def comfytype(io_type: str, input_base: type = Input):
    """A ComfyType: a class with nested Input and Output classes bound to `io_type`."""
    def make(cls):
        base_in = cls.__dict__.get("Input", input_base)
        cls.Input = type("Input", (base_in,), {"io_type": io_type})
        cls.Output = type("Output", (Output,), {"io_type": io_type})
        cls.io_type = io_type
        return cls
    return make


def Custom(io_type: str) -> type:
    """A ComfyType for a type of the pack's own (HYPERLORA_MODEL, ...)."""
    @comfytype(io_type)
    class CustomComfyType:
        pass
    return CustomComfyType


@comfytype("BOOLEAN")
class Boolean:
    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                     default: bool = None, label_on: str = None, label_off: str = None, socketless: bool = None,
                     force_input: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.label_on, self.label_off = label_on, label_off

        def as_dict(self) -> dict:
            return super().as_dict() | _prune({"label_on": self.label_on, "label_off": self.label_off})


@comfytype("INT")
class Int:
    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                     default: int = None, min: int = None, max: int = None, step: int = None,
                     control_after_generate: bool = None, display_mode: NumberDisplay = None,
                     socketless: bool = None, force_input: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min, self.max, self.step = min, max, step
            self.control_after_generate = control_after_generate
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | _prune({
                "min": self.min, "max": self.max, "step": self.step,
                "control_after_generate": self.control_after_generate,
                "display": self.display_mode.value if self.display_mode else None})


@comfytype("FLOAT")
class Float:
    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                     default: float = None, min: float = None, max: float = None, step: float = None,
                     round: float = None, display_mode: NumberDisplay = None, socketless: bool = None,
                     force_input: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min, self.max, self.step, self.round = min, max, step, round
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | _prune({"min": self.min, "max": self.max, "step": self.step,
                                               "round": self.round, "display": self.display_mode})


@comfytype("STRING")
class String:
    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                     multiline=False, placeholder: str = None, default: str = None, dynamic_prompts: bool = None,
                     socketless: bool = None, force_input: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.multiline, self.placeholder, self.dynamic_prompts = multiline, placeholder, dynamic_prompts

        def as_dict(self) -> dict:
            return super().as_dict() | _prune({"multiline": self.multiline, "placeholder": self.placeholder,
                                               "dynamicPrompts": self.dynamic_prompts})


@comfytype("COMBO")
class Combo:
    class Input(WidgetInput):
        def __init__(self, id: str, options: list = None, display_name: str = None, optional=False,
                     tooltip: str = None, lazy: bool = None, default: str = None, control_after_generate: bool = None,
                     upload=None, image_folder=None, remote=None, socketless: bool = None):
            if isinstance(options, type) and issubclass(options, Enum):
                options = [v.value for v in options]
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)
            self.multiselect = False
            self.options = options
            self.control_after_generate = control_after_generate
            if upload is not None or image_folder is not None or remote is not None:
                raise NotImplementedError("the stand-in has no upload, image_folder or remote combos")

        def as_dict(self) -> dict:
            return super().as_dict() | _prune({"multiselect": self.multiselect, "options": self.options,
                                               "control_after_generate": self.control_after_generate})


def _plain(io_type: str) -> type:
    @comfytype(io_type)
    class Plain:
        pass
    return Plain


Image = _plain("IMAGE")
Mask = _plain("MASK")
Latent = _plain("LATENT")
Conditioning = _plain("CONDITIONING")
Clip = _plain("CLIP")
ClipVision = _plain("CLIP_VISION")
Model = _plain("MODEL")
Vae = _plain("VAE")
LoraModel = _plain("LORA_MODEL")
Hooks = _plain("HOOKS")


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


@dataclass
class Schema:
    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list = None
    outputs: list = None
    hidden: list = None
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self) -> None:
        """Input and output ids are unique, within and across the two lists (as the real check)."""
        inputs = [i.id for i in self.inputs or []]
        outputs = [o.id for o in self.outputs or []]
        problems = []
        if len(set(inputs)) != len(inputs):
            problems.append(f"Input ids must be unique: {inputs}")
        if len(set(outputs)) != len(outputs):
            problems.append(f"Output ids must be unique: {outputs}")
        if set(inputs) & set(outputs):
            problems.append(f"Ids must be unique between inputs and outputs, but {set(inputs) & set(outputs)} are not.")
        if problems:
            raise ValueError("\n".join(problems))

    def finalize(self) -> None:
        if self.is_output_node:
            self.hidden = list(self.hidden or [])
            for hidden in (Hidden.prompt, Hidden.extra_pnginfo):
                if hidden not in self.hidden:
                    self.hidden.append(hidden)
        for i, output in enumerate(self.outputs or []):
            if output.id is None:
                output.id = f"_{i}_{output.io_type}_"

    def v1_inputs(self) -> dict:
        spec: dict = {"required": {}}
        for i in self.inputs or []:
            as_dict = i.as_dict()
            as_dict.pop("optional", None)
            spec.setdefault("optional" if i.optional else "required", {})[i.id] = (i.get_io_type(), as_dict)
        for hidden in self.hidden or []:
            spec.setdefault("hidden", {})[hidden.name] = (hidden.value,)
        return spec

    def get_v1_info(self, cls) -> dict:
        """The node's entry in /object_info, as ComfyUI serves a V3 node's."""
        inputs = self.v1_inputs()
        outputs = self.outputs or []
        return {
            "input": inputs,
            "input_order": {key: list(value) for key, value in inputs.items()},
            "output": [o.io_type for o in outputs],
            "output_is_list": [o.is_output_list for o in outputs],
            "output_name": [o.display_name or o.io_type for o in outputs],
            "output_tooltips": [o.tooltip or None for o in outputs],
            "name": self.node_id,
            "display_name": self.display_name,
            "description": self.description,
            "category": self.category,
            "output_node": self.is_output_node,
            "deprecated": self.is_deprecated,
            "experimental": self.is_experimental,
            "api_node": self.is_api_node,
            "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
        }


class NodeOutput:
    """What `execute` returns: the outputs in order, and optionally what the node shows (`ui`)."""

    def __init__(self, *args: Any, ui=None, expand: dict = None, block_execution: str = None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self):
        return self.args if len(self.args) > 0 else None

    def __getitem__(self, index):
        return self.args[index]


class ComfyNode:
    """Base of V3 nodes: `define_schema` and `execute` are class methods; no instance state."""

    hidden = None  # ComfyUI sets the requested hidden inputs on the class clone it runs

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        for name in ("define_schema", "execute"):
            if getattr(cls, name).__func__ is getattr(ComfyNode, name).__func__:
                raise Exception(f"No {name} function was defined for node class {cls.__name__}.")
        schema = cls.define_schema()
        schema.finalize()
        schema.validate()
        return schema

    @classmethod
    def INPUT_TYPES(cls, include_hidden=True) -> dict:
        schema = cls.define_schema()
        schema.finalize()
        spec = schema.v1_inputs()
        if not include_hidden:
            spec.pop("hidden", None)
        return spec

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict:
        return cls.GET_SCHEMA().get_v1_info(cls)

    @classmethod
    def EXECUTE_NORMALIZED(cls, *args, **kwargs) -> NodeOutput:
        out = cls.execute(*args, **kwargs)
        if out is None:
            return NodeOutput()
        if isinstance(out, NodeOutput):
            return out
        if isinstance(out, tuple):
            return NodeOutput(*out)
        raise Exception(f"Invalid return type from node: {type(out)}")

    FUNCTION = classproperty(lambda cls: "EXECUTE_NORMALIZED_ASYNC" if inspect.iscoroutinefunction(cls.execute)
                             else "EXECUTE_NORMALIZED")
    DESCRIPTION = classproperty(lambda cls: cls.GET_SCHEMA().description)
    CATEGORY = classproperty(lambda cls: cls.GET_SCHEMA().category)
    OUTPUT_NODE = classproperty(lambda cls: cls.GET_SCHEMA().is_output_node)
    INPUT_IS_LIST = classproperty(lambda cls: cls.GET_SCHEMA().is_input_list)
    NOT_IDEMPOTENT = classproperty(lambda cls: cls.GET_SCHEMA().not_idempotent)
    RETURN_TYPES = classproperty(lambda cls: [o.io_type for o in cls.GET_SCHEMA().outputs or []])
    RETURN_NAMES = classproperty(lambda cls: [o.display_name or o.io_type for o in cls.GET_SCHEMA().outputs or []])
    OUTPUT_IS_LIST = classproperty(lambda cls: [o.is_output_list for o in cls.GET_SCHEMA().outputs or []])
    OUTPUT_TOOLTIPS = classproperty(lambda cls: [o.tooltip or None for o in cls.GET_SCHEMA().outputs or []])
