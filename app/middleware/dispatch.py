"""The base class of this server's middleware, and the pipeline that runs the layers as one.

FastMCP's `Middleware` wraps every message in pass-through `on_message` and `on_request` frames for
every layer and both dispatch phases; with seven layers that was about half the capability stack's
cost per call (profiled in `make bench`, issue 15 goal 2). A layer built on `TypedMiddleware`
takes part only where it overrides a typed hook (`on_call_tool`, `on_list_tools`, ...). A layer
that overrides a generic hook (`on_message`, `on_request`, `on_notification`) keeps FastMCP's full
dispatch, so no hook is ever skipped.

Even a typed layer still costs FastMCP three coroutine frames per message and dispatch phase, which
for the eleven layers was as much as most of the layers' own work. `LayerPipeline` hands FastMCP one
middleware and chains the layers' typed hooks itself, in the same order, with nothing in between.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext

# MCP method -> the typed hook FastMCP dispatches it to (fastmcp.server.middleware.Middleware).
TYPED_HOOKS = {
    "initialize": "on_initialize",
    "server/discover": "on_discover",
    "tools/call": "on_call_tool",
    "tools/list": "on_list_tools",
    "resources/read": "on_read_resource",
    "resources/list": "on_list_resources",
    "resources/templates/list": "on_list_resource_templates",
    "prompts/get": "on_get_prompt",
    "prompts/list": "on_list_prompts",
}
GENERIC_HOOKS = frozenset({"on_message", "on_request", "on_notification"})
_TYPED_PHASES = frozenset({"all", "typed"})


class TypedMiddleware(Middleware):
    """A middleware that runs only in the typed hooks it overrides.

    Example:
        >>> class Deny(TypedMiddleware):
        ...     async def on_call_tool(self, context, call_next):
        ...         raise ToolError("no")
    """

    _hooks: dict[str, str] = {}
    _generic = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._generic = any(getattr(cls, hook) is not getattr(Middleware, hook) for hook in GENERIC_HOOKS)
        cls._hooks = {method: hook for method, hook in TYPED_HOOKS.items()
                      if getattr(cls, hook) is not getattr(Middleware, hook)}

    async def _dispatch_handler(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any],
                                phase: str = "all") -> CallNext[Any, Any]:
        if self._generic:
            return await super()._dispatch_handler(context, call_next, phase)
        hook = self._hooks.get(context.method) if phase in _TYPED_PHASES else None
        return call_next if hook is None else functools.partial(getattr(self, hook), call_next=call_next)


class LayerPipeline(Middleware):
    """Typed layers run as one FastMCP middleware: each message walks straight through the hooks it has.

    Args:
        layers: Outermost first. Every layer must be a `TypedMiddleware` with typed hooks only.

    Example:
        >>> FastMCP("x", middleware=[LayerPipeline([audit, scopes, quotas])])
    """

    def __init__(self, layers: Sequence[TypedMiddleware]) -> None:
        generic = [type(layer).__name__ for layer in layers if not isinstance(layer, TypedMiddleware) or layer._generic]
        if generic:
            # Fail loudly: a generic hook in here would never run.
            raise TypeError(f"only typed layers can share a pipeline, not {', '.join(generic)}")
        self.layers = tuple(layers)
        self._hooks = {method: tuple(getattr(layer, hook) for layer in self.layers if method in layer._hooks)
                       for method, hook in TYPED_HOOKS.items()}

    async def _dispatch_handler(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any],
                                phase: str = "all") -> CallNext[Any, Any]:
        hooks = self._hooks.get(context.method, ()) if phase in _TYPED_PHASES else ()
        handler = call_next
        for hook in reversed(hooks):
            handler = functools.partial(hook, call_next=handler)
        return handler
