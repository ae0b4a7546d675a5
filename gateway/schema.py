"""The gateway's four routes in the OpenAPI schema (drf-spectacular hook), next to the REST API's.

The routes are plain Django views (no DRF on the hot path), so drf-spectacular cannot see them; this hook
adds a hand-written description: what clients and the schema-driven fuzzer read. It documents every status
the routes answer with, each error in OpenAI's `{"error": {message, type, code}}` shape.
"""

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"}},
        }
    },
}
MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {"role": {"type": "string"}, "content": {"nullable": True}},
    "additionalProperties": True,
}
CHAT_FIELDS = {
    "messages": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/GatewayMessage"}},
    "stream": {"type": "boolean", "default": False},
}
EMBEDDINGS_INPUT = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "minItems": 1, "items": {"type": "string"}},
    ]
}
MODEL = {"type": "string", "description": "The name of the gateway endpoint to call."}
COMPONENTS = {
    "GatewayError": ERROR,
    "GatewayMessage": MESSAGE,
    "GatewayChatRequest": {
        "type": "object", "required": ["model", "messages"], "properties": {"model": MODEL, **CHAT_FIELDS},
        "additionalProperties": True,
    },
    "GatewayEmbeddingsRequest": {
        "type": "object", "required": ["model", "input"], "properties": {"model": MODEL, "input": EMBEDDINGS_INPUT},
        "additionalProperties": True,
    },
    "GatewayInvocationRequest": {
        "type": "object",
        "description": "A chat body (`messages`) or an embeddings body (`input`), as the endpoint's task needs.",
        "properties": {**CHAT_FIELDS, "input": EMBEDDINGS_INPUT},
        "additionalProperties": True,
    },
    "GatewayAnswer": {
        "type": "object",
        "description": "OpenAI's chat completion or embeddings list.",
        "required": ["object"],
        "properties": {"object": {"type": "string"}},
        "additionalProperties": True,
    },
    "GatewayStreamEvent": {
        "type": "object",
        "description": "One server-sent event (`\"stream\": true`): `data` is an OpenAI chat.completion.chunk "
        "as JSON, or `[DONE]` last.",
        "required": ["data"],
        "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}},
    },
    "GatewayModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "object", "created", "owned_by"],
                    "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                                   "created": {"type": "integer"}, "owned_by": {"type": "string"}},
                },
            },
        },
    },
}
ERROR_STATUSES = {
    "400": "The body is not valid JSON or not a valid request for the endpoint's task; or the provider refused it.",
    "401": "No valid API token; or the provider rejected the connection's credentials.",
    "403": "The token's user lacks endpoints.view_endpoint, the token is read-only or not limited to this "
           "endpoint, or the endpoint is disabled.",
    "404": "No endpoint has that name; or the provider does not know the model.",
    "405": "Wrong HTTP method.",
    "413": "The body is larger than 20 MiB.",
    "422": "The provider could not process the request.",
    "429": "The token's or the endpoint's rate limit (rate_limit_exceeded) or token budget (budget_exceeded), "
           "or the provider's rate limit (upstream_rate_limited); Retry-After says when to retry.",
    "502": "The provider failed or answered something unreadable.",
    "503": "The provider is unreachable, or the connection's secrets cannot be decrypted.",
    "504": "The provider did not answer in time.",
}


ROUTE_HEADERS = {
    "x-llmc-destination": {"description": "The destination that answered (or was tried last): `<connection>/<model>`.",
                           "schema": {"type": "string"}},
    "x-llmc-attempts": {"description": "How many destinations the call tried, this one included.",
                        "schema": {"type": "integer", "minimum": 1}},
}


def json_content(schema_name: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}


def errors(*statuses: str) -> dict:
    return {status: {"description": ERROR_STATUSES[status], "content": json_content("GatewayError"),
                     **({"headers": ROUTE_HEADERS} if status not in ("401", "403", "404", "405", "413") else {})}
            for status in statuses}


CALL_ERRORS = ("400", "401", "403", "404", "405", "413", "422", "429", "502", "503", "504")


def call_operation(operation_id: str, summary: str, request: str, *, streams: bool) -> dict:
    answer = json_content("GatewayAnswer")
    if streams:
        # Open API 3.0: the schema of an event stream describes each event.
        answer["text/event-stream"] = {"schema": {"$ref": "#/components/schemas/GatewayStreamEvent"}}
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["gateway"],
            "security": [{"bearerAuth": []}],
            "requestBody": {"required": True, "content": json_content(request)},
            "responses": {"200": {"description": "The provider's answer in OpenAI's shape.", "content": answer,
                                  "headers": ROUTE_HEADERS},
                          **errors(*CALL_ERRORS)},
        }
    }


def gateway_paths() -> dict:
    invocations = call_operation(
        "gateway_invocations", "Call the endpoint named in the path (its own task)", "GatewayInvocationRequest",
        streams=True,
    )
    invocations["post"]["parameters"] = [
        {"name": "endpoint", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "The gateway endpoint's name."}
    ]
    return {
        "/gateway/v1/chat/completions": call_operation(
            "gateway_chat_completions", "Chat with the endpoint named in `model`", "GatewayChatRequest",
            streams=True,
        ),
        "/gateway/v1/embeddings": call_operation(
            "gateway_embeddings", "Embeddings from the endpoint named in `model`", "GatewayEmbeddingsRequest",
            streams=False,
        ),
        "/gateway/v1/models": {
            "get": {
                "operationId": "gateway_models",
                "summary": "The enabled endpoints, as OpenAI lists models",
                "tags": ["gateway"],
                "security": [{"bearerAuth": []}],
                "responses": {"200": {"description": "The endpoints.", "content": json_content("GatewayModelList")},
                              **errors("401", "403", "405")},
            }
        },
        "/gateway/{endpoint}/invocations": invocations,
    }


def add_gateway_paths(result: dict, generator, request, public) -> dict:
    """drf-spectacular hook: the gateway's routes and their schemas join the generated document."""
    result.setdefault("paths", {}).update(gateway_paths())
    result.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
    return result
