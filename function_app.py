"""Azure Functions bindings. Each trigger adapts its input and calls one handler."""

from __future__ import annotations

import azure.functions as func

from recording_pipeline.functions_host import RuntimeHolder
from recording_pipeline.telemetry import configure_azure_monitor_if_set, install_context_filter
from recording_pipeline.webhook import WebhookRequest, handle_delivery
from recording_pipeline.worker import handle_chunk_message

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
_runtime = RuntimeHolder()
install_context_filter()
configure_azure_monitor_if_set()


@app.route(route="recording-events", methods=["POST", "OPTIONS"], auth_level=func.AuthLevel.FUNCTION)
async def recording_events(req: func.HttpRequest) -> func.HttpResponse:
    runtime = await _runtime.get()
    response = await handle_delivery(
        WebhookRequest(req.method, dict(req.headers), req.get_body()), runtime.webhook, runtime.queue, runtime.audit
    )
    return func.HttpResponse(
        body=response.json_bytes(),
        status_code=response.status,
        headers=response.headers,
        mimetype="application/json" if response.body is not None else None,
    )


@app.queue_trigger(arg_name="msg", queue_name="%CHUNK_QUEUE_NAME%", connection="AzureWebJobsStorage")
async def archive_recording_chunk(msg: func.QueueMessage) -> None:
    runtime = await _runtime.get()
    await handle_chunk_message(msg.get_body().decode("utf-8"), int(msg.dequeue_count or 1), runtime.worker)
