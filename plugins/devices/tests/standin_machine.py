"""TEMPORARY stand-in for arctern.machine.{device,vmstate,irq,clock,chardev} until the
machine-core engineer's modules land; installed only when those imports fail. Delete then."""

import json
import sys
import types


def _prop(kind, default):
    def parse(text):
        if kind is bool and isinstance(text, str):
            return text in ("on", "true", "yes", "1")
        if kind is int and isinstance(text, str):
            return int(text, 0)
        return kind(text)

    return types.SimpleNamespace(parse=parse, default=default)


class Device:
    name = ""
    bus_type = None
    user_creatable = True
    properties: dict = {}
    vmstate = None

    def __init__(self, machine, *, id=None, **props):
        self.machine, self.id = machine, id
        self.props = {k: p.default for k, p in self.properties.items()}
        for key, value in props.items():
            if key not in self.properties:
                from arctern.errors import MachineError

                raise MachineError(f"Property '{self.name}.{key}' not found")
            self.props[key] = self.properties[key].parse(value)

    def unrealize(self):
        pass

    def post_load(self):
        pass


class Bus:
    def __init__(self, type, name):
        self.type, self.name, self.device = type, name, None

    def plug(self, device):
        self.device = device

    def unplug(self):
        self.device = None


class _Field:
    def __init__(self, kind, attr, *extra):
        self.kind, self.attr, self.extra = kind, attr, extra


class VMState:
    def __init__(self, name, version, fields, minimum_version=1):
        self.name, self.version, self.fields = name, version, fields

    def save(self, obj):
        out = {}
        for f in self.fields:
            value = getattr(obj, f.attr)
            if f.kind == "buffer":
                value = bytes(value).hex()
            elif f.kind == "struct_list":
                value = [f.extra[0].save(item) for item in value]
            elif f.kind == "array":
                value = list(value)
            out[f.attr] = value
        return out

    def load(self, obj, data, version):
        for f in self.fields:
            value = data[f.attr]
            if f.kind == "buffer":
                value = bytearray.fromhex(value)
            elif f.kind == "struct_list":
                current = getattr(obj, f.attr)
                items = []
                for i, item_data in enumerate(value):
                    item = current[i] if i < len(current) else f.extra[1]()
                    f.extra[0].load(item, item_data, 1)
                    items.append(item)
                value = items
            setattr(obj, f.attr, value)

    def encode(self, data):
        return json.dumps([self.version, data]).encode()

    @staticmethod
    def decode(blob):
        version, data = json.loads(blob)
        return data, version


def _field(kind):
    return lambda attr, *extra, since=1: _Field(kind, attr, *extra)


class IRQLine:
    def __init__(self, name=""):
        self.name, self.level, self._handlers = name, False, []

    def connect(self, handler):
        self._handlers.append(handler)

    def set(self, level):
        level = bool(level)
        changed = level != self.level
        self.level = level
        if changed:
            for handler in self._handlers:
                handler(level)

    def raise_(self):
        self.set(True)

    def lower(self):
        self.set(False)


class VirtualClock:
    def __init__(self):
        self.now = 0

    def ns(self):
        return self.now


class _FileChardev:
    def __init__(self, path):
        self.f = open(path, "ab") if path else None

    def write(self, data):
        if self.f:
            self.f.write(data)
            self.f.flush()

    def set_receiver(self, callback):
        self.receiver = callback

    def close(self):
        if self.f:
            self.f.close()


def open_chardev(spec):
    return _FileChardev(spec[5:] if spec.startswith("file:") else None)


def install():
    try:
        import arctern.machine.device  # noqa: F401

        return False
    except ImportError:
        pass
    mods = {
        "device": dict(
            Device=Device,
            Bus=Bus,
            prop_int=lambda d: _prop(int, d),
            prop_bool=lambda d: _prop(bool, d),
            prop_str=lambda d: _prop(str, d),
        ),
        "vmstate": dict(
            VMState=VMState,
            **{
                k: _field(k)
                for k in "u8 u16 u32 u64 i32 i64 boolean buffer array struct struct_list".split()
            },
        ),
        "irq": dict(IRQLine=IRQLine),
        "clock": dict(VirtualClock=VirtualClock),
        "chardev": dict(open_chardev=open_chardev),
    }
    for name, attrs in mods.items():
        module = types.ModuleType(f"arctern.machine.{name}")
        module.__dict__.update(attrs)
        sys.modules[module.__name__] = module
    return True
