"""A name registry for small serialisable objects (regularizers, constraints): ``get`` from a name,
a config dict, ``None`` or an object; ``serialize``/``deserialize`` as ``{"class_name", "config"}``,
building only the registered classes."""

from __future__ import annotations

__all__ = ["ObjectRegistry"]


class ObjectRegistry:
    """``kind`` names the objects in messages; ``base`` is their class; ``aliases`` maps snake_case
    names to classes (the class names themselves are accepted too)."""

    def __init__(self, kind: str, base: type, aliases: dict):
        self.kind, self.base = kind, base
        self.aliases = dict(aliases)
        self.classes = {cls.__name__: cls for cls in aliases.values()}

    def get(self, identifier):
        if identifier is None or isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        if isinstance(identifier, str):
            cls = self.aliases.get(identifier) or self.classes.get(identifier)
            if cls is None:
                raise ValueError(f"Unknown {self.kind}: {identifier!r}. Expected one of {sorted(self.aliases)}.")
            return cls()
        raise TypeError(f"Expected a {self.kind} name, config dict or {self.base.__name__}. Received: {identifier!r}")

    @staticmethod
    def serialize(obj):
        return None if obj is None else {"class_name": type(obj).__name__, "config": obj.get_config()}

    def deserialize(self, config):
        if config is None:
            return None
        cls = self.classes.get(config.get("class_name")) if isinstance(config, dict) else None
        if cls is None:
            raise ValueError(f"Unknown {self.kind} class in {config!r}. Expected one of {sorted(self.classes)}.")
        return cls.from_config(dict(config.get("config", {})))
