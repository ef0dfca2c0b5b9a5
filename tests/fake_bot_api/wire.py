"""HTTP plumbing of the stand-in: what comes in (query strings, forms, JSON, multipart), what goes
out (answers, webhook POSTs), and the error object both speak."""

import http.client
import json
import re
import socket
from http.server import BaseHTTPRequestHandler

TEXT_KEYS = {
    "text",
    "caption",
    "description",
    "short_description",
    "title",
    "query",
    "url",
    "secret_token",
    "ip_address",
}
INT_KEYS = {
    "chat_id",
    "message_id",
    "offset",
    "limit",
    "timeout",
    "user_id",
    "from_chat_id",
    "message_thread_id",
    "max_connections",
}
BOOL_WORDS = {"True": True, "true": True, "False": False, "false": False}


class ApiError(Exception):
    """A Bot API error answer: {"ok": false, "error_code", "description"[, "parameters"]}."""

    def __init__(self, code, description, parameters=None):
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


class HangUp(Exception):
    """Close the client's connection without an answer: the network is down."""


def error_body(code, description, parameters=None):
    body = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


def decode_value(key, value):
    """Turn the strings pyTelegramBotAPI sends back into ints, bools and JSON objects."""
    if not isinstance(value, str) or key in TEXT_KEYS:
        return value
    if key in INT_KEYS and re.fullmatch(r"-?\d+", value):
        return int(value)
    if value in BOOL_WORDS:
        return BOOL_WORDS[value]
    if value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _header_param(header, key):
    """A parameter of a Content-Disposition header; pyTelegramBotAPI sends filename unquoted."""
    quoted = re.search(rf';\s*{key}="((?:[^"\\]|\\.)*)"', header)
    if quoted:
        return re.sub(r"\\(.)", r"\1", quoted.group(1)).replace("%22", '"')
    bare = re.search(r";\s*{}=({})".format(key, ".*" if key == "filename" else "[^;]*"), header)
    return bare.group(1).strip() if bare else None


def parse_multipart(content_type, body):
    """Split a multipart/form-data body into ({name: str}, {name: (filename, bytes)})."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise ApiError(400, "Bad Request: multipart boundary is missing")
    fields, files = {}, {}
    for part in (b"\r\n" + body).split(b"\r\n--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, sep, data = part.partition(b"\r\n\r\n")
        disposition = next(
            (
                line.split(":", 1)[1]
                for line in head.decode("utf-8", "replace").split("\r\n")
                if line.lower().startswith("content-disposition:")
            ),
            None,
        )
        if not sep or disposition is None:
            continue
        name, filename = _header_param(disposition, "name"), _header_param(disposition, "filename")
        if filename is None:
            fields[name] = data.decode("utf-8")
        else:
            files[name] = (filename, data)
    return fields, files


def post_json(connection, url, update, secret):
    """POST one update to a webhook: (status, reason, the Retry-After header or None)."""
    body = json.dumps(update, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    if secret:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    connection.request("POST", (url.path or "/") + ("?" + url.query if url.query else ""), body, headers)
    response = connection.getresponse()
    response.read()  # the body is ignored (Telegram would run a method named there)
    return response.status, response.reason, response.getheader("Retry-After")


def connect_error(error):
    """getWebhookInfo's words for a webhook that could not be reached."""
    if isinstance(error, ConnectionRefusedError):
        return "Connection refused"
    if isinstance(error, socket.timeout):
        return "Connection timed out"
    if isinstance(error, socket.gaierror):
        return f"Failed to resolve host: {error.strerror}"
    return "Connection error: %s" % (error.strerror or error)


def answer_error(error):
    """getWebhookInfo's words for a webhook that was reached but gave no proper answer."""
    if isinstance(error, socket.timeout):
        return "Read timeout expired"
    if isinstance(error, (ConnectionError, http.client.IncompleteRead)):
        return "Webhook connection closed"
    return f"Wrong response from the webhook: {error}"


def cut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked reading from it
    except OSError:
        pass


def short(value, limit=200):
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def reply(handler, status, payload, content_type="application/json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client went away (a bot killed mid-request): nothing to answer


def make_handler(fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def do_GET(self):
            fake._serve(self)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    return Handler
