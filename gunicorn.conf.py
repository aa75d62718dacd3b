"""gunicorn settings. Access logs never carry query strings: a key may travel as `?key=`."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = 120
graceful_timeout = 30
accesslog = "-"
# %(U)s is the path without the query string; %(q)s (the query) is deliberately left out.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss "%({x-request-id}o)s"'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Several OneKey servers may run on one machine (tests, bench); a shared control socket would clash.
control_socket_disable = True
