"""Azure Functions bindings. Each trigger adapts its input and calls one handler.

Configuration is read here, once, at import (see recording_pipeline.functions_adapter):
with a configuration error the queue trigger is not declared at all, so no
message is taken and no delivery is counted until it is fixed.

Telemetry is the Python worker's (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY): it
configured OpenTelemetry before this import, and the app only quiets its
per-block storage calls (recording_pipeline.edges.telemetry).
"""

from __future__ import annotations

from pathlib import Path

import azure.functions as func

from recording_pipeline.app.webhook import WebhookRequest
from recording_pipeline.edges.telemetry import configure_app_telemetry, install_context_filter
from recording_pipeline.functions_adapter import (
    DEADLETTER_SCHEDULE,
    FIXITY_SCHEDULE,
    POISON_DEPTH_SCHEDULE,
    REDELIVERY_SCHEDULE,
    RuntimeHolder,
    archive_message,
    audit_fixity,
    deliver,
    load_app_config,
    redeliver_outbound_events,
    redrive_dead_letters_on_schedule,
    report_poison_depth,
)

install_context_filter()
configure_app_telemetry()
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
config = load_app_config(Path(__file__).resolve().parent)
runtime = config if isinstance(config, Exception) else RuntimeHolder(config)


@app.route(route="recording-events", methods=["POST", "OPTIONS"], auth_level=func.AuthLevel.FUNCTION)
async def recording_events(req: func.HttpRequest) -> func.HttpResponse:
    response = await deliver(runtime, WebhookRequest(req.method, dict(req.headers), req.get_body()))
    return func.HttpResponse(
        body=response.json_bytes(),
        status_code=response.status,
        headers=response.headers,
        mimetype="application/json" if response.body is not None else None,
    )


if isinstance(runtime, RuntimeHolder):
    holder = runtime

    @app.queue_trigger(arg_name="msg", queue_name="%CHUNK_QUEUE_NAME%", connection="AzureWebJobsStorage")
    async def archive_recording_chunk(msg: func.QueueMessage) -> None:
        # A body that is not UTF-8 still reaches the handler, which quarantines it with the reason.
        body = msg.get_body().decode("utf-8", "replace")
        await archive_message(holder, body, int(msg.dequeue_count or 1), msg.id)

    @app.timer_trigger(arg_name="timer", schedule=POISON_DEPTH_SCHEDULE)
    async def poison_depth(timer: func.TimerRequest) -> None:
        await report_poison_depth(holder)

    @app.timer_trigger(arg_name="timer", schedule=DEADLETTER_SCHEDULE)
    async def deadletter_redrive(timer: func.TimerRequest) -> None:
        await redrive_dead_letters_on_schedule(holder)

    @app.timer_trigger(arg_name="timer", schedule=FIXITY_SCHEDULE)
    async def fixity_audit(timer: func.TimerRequest) -> None:
        await audit_fixity(holder)

    if holder.config.settings.events.enabled:

        @app.timer_trigger(arg_name="timer", schedule=REDELIVERY_SCHEDULE)
        async def outbound_redelivery(timer: func.TimerRequest) -> None:
            await redeliver_outbound_events(holder)
