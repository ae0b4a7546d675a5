"""A WSGI app for tests/config/test_workers.py: answers with the thread and client port that served the request.

`?sleep=<seconds>` answers after that long.
"""

import json
import threading
import time


def application(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    if query.startswith("sleep="):
        time.sleep(float(query.removeprefix("sleep=")))
    body = json.dumps({"thread": threading.get_ident(), "port": environ.get("REMOTE_PORT")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
