"""Containers: Sequential (a chain), ModuleList and ModuleDict (registered collections)."""

from __future__ import annotations

from collections import OrderedDict

from .module import Module


class Sequential(Module):
    """f = f_L ∘ ... ∘ f_2 ∘ f_1: applies its modules in order.

    ``Sequential(m1, m2, ...)`` names them "0", "1", ...; ``Sequential(OrderedDict(...))``
    uses the given names. Indexing with an int gives a module, with a slice a Sequential.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for name, m in modules[0].items():
                self.add_module(str(name), m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[idx][1]

    def append(self, module: Module) -> Sequential:

        """Add ``module`` at the end (named by its position)."""
        self.add_module(str(len(self._modules)), module)
        return self


class ModuleList(Module):
    """A list of sub-modules, registered (so their parameters are found) under "0", "1", ..."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def _renumber(self, mods):
        d = self.__dict__
        for k in list(self._modules):
            d.pop(k, None)
        self._modules.clear()
        for i, m in enumerate(mods):
            self.add_module(str(i), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        return mods[idx]

    def __setitem__(self, idx, module):
        n = len(self)
        i = idx + n if idx < 0 else idx
        if not 0 <= i < n:
            raise IndexError(f"ModuleList: index {idx} out of range for length {n}")
        self.add_module(str(i), module)

    def __delitem__(self, idx):
        mods = list(self._modules.values())
        del mods[idx]
        self._renumber(mods)

    def append(self, module: Module) -> ModuleList:

        """Add ``module`` at the end (named by its position)."""
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules) -> ModuleList:

        """Append every module of an iterable."""
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:

        """Insert ``module`` before position ``index`` (entries are renumbered)."""
        mods = list(self._modules.values())
        mods.insert(index, module)
        self._renumber(mods)


class ModuleDict(Module):
    """A dict of named sub-modules (registered; insertion order kept)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]
        self.__dict__.pop(key, None)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):

        """The names, in insertion order."""
        return self._modules.keys()

    def values(self):

        """The modules, in insertion order."""
        return self._modules.values()

    def items(self):

        """(name, module) pairs, in insertion order."""
        return self._modules.items()

    def update(self, modules) -> None:

        """Add (name, module) pairs from a dict or an iterable of pairs."""
        items = modules.items() if hasattr(modules, "items") else modules
        for k, m in items:
            self.add_module(k, m)

    def pop(self, key: str) -> Module:

        """Remove and return the module under ``key``."""
        m = self._modules[key]
        del self[key]
        return m


__all__ = ["Sequential", "ModuleList", "ModuleDict"]
