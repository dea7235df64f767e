"""Model providers: scripted (offline), openai, anthropic; pricing, retries, limits."""

from .base import (
    Message,
    ModelRequest,
    ModelResponse,
    Provider,
    ProviderError,
    ToolCall,
    ToolSpec,
    Usage,
)
from .pricing import Pricing
from .runtime import ProviderPool, RetryPolicy, backoff_delay_ms

__all__ = [
    "Message",
    "ModelRequest",
    "ModelResponse",
    "Pricing",
    "Provider",
    "ProviderError",
    "ProviderPool",
    "RetryPolicy",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "backoff_delay_ms",
]
