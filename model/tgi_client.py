"""huggingface_hub's inference client, for one text-generation-inference server of this deployment.

`HF_HUB_OFFLINE=1` makes huggingface_hub refuse every HTTP request its sessions make, because it
means "do not reach the Hugging Face hub". A bot that reads the tokenizer from a pre-filled cache sets
it, and must still reach its own TGI servers, which are not the hub. So this client makes its own
connection (with huggingface_hub's response hook, which keeps TGI's error bodies readable) instead of
taking the session that offline mode blocks. Everything else is the library's client unchanged.
"""

from __future__ import annotations

import httpx2
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.utils._http import async_hf_response_event_hook

# huggingface_hub's name for a server called by its URL (its health and info calls require it).
TGI_PROVIDER = "hf-inference"


class TgiClient(AsyncInferenceClient):
    """`AsyncInferenceClient(base_url=url)` that works whether or not the hub is offline."""

    def __init__(self, url: str, *, timeout: float | None = None) -> None:
        super().__init__(base_url=url, provider=TGI_PROVIDER, timeout=timeout)

    async def _get_async_client(self) -> httpx2.AsyncClient:
        if self._async_client is None:
            connection = httpx2.AsyncClient(
                event_hooks={"response": [async_hf_response_event_hook]}, follow_redirects=False, timeout=None
            )
            self._async_client = await self.exit_stack.enter_async_context(connection)
        return self._async_client
