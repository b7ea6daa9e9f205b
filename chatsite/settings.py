"""Settings for chatsite, read from the environment.

Every variable is documented in the README. Development defaults are safe and embedded
(SQLite, in-process cache, the development LLM server); production must set SECRET_KEY and
ALLOWED_HOSTS, and should set DATABASE_URL and REDIS_URL.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from chatsite.env import (
    env_bool,
    env_disconnect_policy,
    env_float,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off. For local development set DEBUG=1."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # daphne first: it replaces runserver with an ASGI server, so streaming works in development.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_ratelimit",
    "corsheaders",
    "conversations",
    "devllm",
]

# Django's own middleware, run on the event loop where their hooks do no I/O instead of in a
# worker thread per hook (see chatsite/middleware.py).
MIDDLEWARE = [
    # First, so that its preflight answers and headers are on every /v1 response, errors too.
    # It runs on the event loop for async requests (no thread hop).
    "corsheaders.middleware.CorsMiddleware",
    "chatsite.middleware.SecurityMiddleware",
    "chatsite.middleware.ContentSecurityPolicyMiddleware",
    "chatsite.middleware.SessionMiddleware",
    "chatsite.middleware.CommonMiddleware",
    "chatsite.middleware.CsrfViewMiddleware",
    "chatsite.middleware.AuthenticationMiddleware",
    "chatsite.middleware.MessageMiddleware",
    "chatsite.middleware.XFrameOptionsMiddleware",
]

# Cross-origin calls to /v1 from browsers (a web app using an OpenAI SDK with a user's key):
# off unless origins are listed. Only /v1, which is authenticated by API key alone; the
# site's session API never answers another origin. The headers are those the openai SDKs
# send and those a client reads (request ID, limits, usage estimate).
CORS_ALLOWED_ORIGINS = env_list("API_CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/v1/.*$"
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "user-agent",
    "x-request-id",
    "openai-beta",
    "openai-organization",
    "openai-project",
    "x-stainless-arch",
    "x-stainless-custom-poll-interval",
    "x-stainless-helper-method",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-poll-helper",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
)
CORS_EXPOSE_HEADERS = (
    "x-request-id",
    "retry-after",
    "x-usage-estimated",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "ratelimit",
    "ratelimit-policy",
)
CORS_PREFLIGHT_MAX_AGE = 600

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# Database: PostgreSQL through psycopg 3 and its pool when DATABASE_URL is set, SQLite otherwise.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
        "DATABASE_POOL", True
    ):
        from chatsite.db import check_pooled_connection

        # The pool requires CONN_MAX_AGE = 0; streaming views give their connection back to it
        # before they stream, so a small pool serves many concurrent streams. `check` tries a
        # connection before handing it out, so that after a database restart the dead ones are
        # replaced instead of failing the requests that get them (see chatsite/db.py).
        min_size = env_int("DATABASE_POOL_MIN_SIZE", 2, minimum=0)
        DATABASES["default"]["OPTIONS"] = {
            # A server that does not answer (a host gone, a packet filter) fails a connection
            # in seconds, not in the minutes TCP would wait.
            "connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1),
            "pool": {
                "check": check_pooled_connection,
                "min_size": min_size,
                "max_size": max(min_size, env_int("DATABASE_POOL_MAX_SIZE", 10, minimum=1)),
                "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0),
            },
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            # A file, not memory, so that server processes started by the tests share it.
            "TEST": {"NAME": BASE_DIR / "test_db.sqlite3"},
            # IMMEDIATE avoids "database is locked" when concurrent streams save at once.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: Redis when REDIS_URL is set (shared by every server process), in-process otherwise.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "chatsite"),
        }
    }
    # django-ratelimit lists only django-redis as supported, but Django's own RedisCache gives
    # it what it needs: an atomic add and incr, shared by every server process.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # The in-process cache is shared by nothing but this process, so limits hold only within
    # it. That is right for the single-process embedded default (make run); production sets
    # REDIS_URL, where this check is not silenced.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

# Django's security checks look for its middleware by dotted path, so chatsite's subclasses
# (chatsite/middleware.py) read as missing; chatsite.middleware reruns those checks as if
# Django's classes were listed, and reports a middleware really missing under its own ID.
SILENCED_SYSTEM_CHECKS += ["security.W001", "security.W002", "security.W003"]


# channels' channel layers: how a Stop sent to one server process reaches the process running
# the turn (conversations.bus), WebSockets and staff's live view. Redis when REDIS_URL is set;
# in one process otherwise (make run). Three layers, each with its own Redis key, receive loop
# and capacity: "default" (sockets, staff's live view), "control" (Stop, revocations, the roll
# call: must land, so room to spare) and "readers" (readers attaching elsewhere: chatty).
def _channel_layer(name: str, *, capacity: int) -> dict:
    if not REDIS_URL:
        return {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": capacity}}
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # Its receive is a BZPOPMIN blocking for 5 s: the socket must wait longer than
            # that (redis-py 8 times a socket out after 5 s by default, failing the read each
            # time the wait runs out; a Stop could then wait a second more). Its pool fails at
            # once past max_connections (redis-py's default, 100). A connection that cannot be
            # made fails within 2 s, so a Redis away is noticed, not waited for.
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": 15,
                    "socket_connect_timeout": 2,
                    "max_connections": 1000,
                }
            ],
            "prefix": f"{env_str('CACHE_KEY_PREFIX', 'chatsite')}:{name}",
            "capacity": capacity,
        },
    }


CHANNEL_LAYERS = {
    "default": _channel_layer("channels", capacity=100),
    "control": _channel_layer("control", capacity=10_000),
    "readers": _channel_layer("readers", capacity=1_000),
}

# Per-turn event logs (conversations.turns.eventlog): Redis Streams when REDIS_URL is set, else in
# process. How long a finished answer's events stay resumable, how long a running one's outlive
# its last event (so a crashed turn's log goes), and how many events one answer keeps.
TURN_LOG_TTL_SECONDS = env_int("TURN_LOG_TTL_SECONDS", 600, minimum=1)
TURN_LOG_RUNNING_TTL_SECONDS = env_int("TURN_LOG_RUNNING_TTL_SECONDS", 3600, minimum=1)
TURN_LOG_MAX_EVENTS = env_int("TURN_LOG_MAX_EVENTS", 10000, minimum=1)
# Redis connections one process's event log may open (appends, and readers waiting on XREAD
# BLOCK); past it, a request waits for a free one.
TURN_LOG_REDIS_CONNECTIONS = env_int("TURN_LOG_REDIS_CONNECTIONS", 500, minimum=1)
# The shortest time between two appends of one turn to the log: what comes meanwhile goes in
# one round trip. Readers in the process running the turn get every event at once regardless.
TURN_LOG_FLUSH_SECONDS = env_float("TURN_LOG_FLUSH_SECONDS", 0.1, minimum=0)
# What happens to an answer when the last client reading it goes away, per surface: "continue"
# (finish and save it), "cancel" (stop the model now, save the partial answer as stopped), or
# a grace period in seconds (cancel unless a reader re-attaches in time). A Stop is always
# explicit: POST /api/turns/<request_id>/stop. OpenAI's SDKs stop a stream by closing it, so
# /v1 cancels by default.
TURN_DISCONNECT_POLICY = {
    "chat": env_disconnect_policy("CHAT_DISCONNECT_POLICY", "continue"),
    "api": env_disconnect_policy("SITE_API_DISCONNECT_POLICY", "continue"),
    "v1": env_disconnect_policy("V1_DISCONNECT_POLICY", "cancel"),
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "conversations:chat"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Browser libraries come from npm (package.json, installed by `make install`) and are served
# straight from node_modules: nothing third-party is committed, and nothing comes from a CDN.
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/marked", NODE_MODULES / "marked" / "lib"),
    ("vendor/dompurify", NODE_MODULES / "dompurify" / "dist"),
    ("vendor/highlight", NODE_MODULES / "@highlightjs" / "cdn-assets"),
]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Serve /static/ from the ASGI application itself (always so under `runserver` with DEBUG).
SERVE_STATIC = env_bool("SERVE_STATIC", DEBUG)

# A second line of defence behind the Markdown sanitizer: even if a model's answer slipped a
# tag through, the browser would run no script but ours and load nothing from elsewhere.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_HTTPS_PROXY", False) else None
)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
# Off by default, so that development over plain HTTP works; production turns them on (see the
# README). SecurityMiddleware sends HSTS only on HTTPS requests, which behind a proxy means
# BEHIND_HTTPS_PROXY must be on; with SSL redirects on and it off, every request would loop.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

# Failed logins (conversations.accounts.logins), counted in the default cache: per account and
# per client address within a window, then a lock.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("LOGIN_ADDRESS_FAILURE_LIMIT", 30, minimum=1)
LOGIN_FAILURE_WINDOW = env_int("LOGIN_FAILURE_WINDOW", 60, minimum=1)  # seconds
LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
# The request header in which your proxy passes the client's address (e.g. X-Real-IP). Behind
# a proxy, REMOTE_ADDR is the proxy's own: without this, every client shares one address. Set
# it only behind a proxy that always overwrites the header, or clients could choose their own.
CLIENT_IP_HEADER = env_str("CLIENT_IP_HEADER")

# The models: endpoints come from a TOML file (see llm_endpoints.example.toml); without one,
# chatsite talks to the development LLM server (`python manage.py devllm`).
LLM_ENDPOINTS_FILE = env_str("LLM_ENDPOINTS_FILE")
DEVLLM_URL = env_str("DEVLLM_URL", "http://127.0.0.1:8001/v1")
LLM_DEFAULT_MODEL = env_str("LLM_DEFAULT_MODEL")
LLM_CONNECT_TIMEOUT = env_float("LLM_CONNECT_TIMEOUT", 10.0)
LLM_READ_TIMEOUT = env_float("LLM_READ_TIMEOUT", 120.0)
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 1, minimum=0)

# The chat pipeline.
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 32_000, minimum=1)
CHAT_HISTORY_MESSAGES = env_int("CHAT_HISTORY_MESSAGES", 50, minimum=1)
# After a new web chat's first answer, ask its model for a short title (conversations.turns.titles);
# off, a chat is titled by its first message.
CHAT_GENERATED_TITLES = env_bool("CHAT_GENERATED_TITLES", False)
# The most messages one /v1 call may send: a bound on the rows and work one request can cause.
CHAT_MAX_PROMPT_MESSAGES = env_int("CHAT_MAX_PROMPT_MESSAGES", 1000, minimum=1)
# Conversations the chat page's sidebar shows at first and loads at a time as it scrolls
# (at most the site API's largest page, 200): the page stays small however long the history.
CHAT_SIDEBAR_PAGE_SIZE = env_int("CHAT_SIDEBAR_PAGE_SIZE", 50, minimum=1)
if CHAT_SIDEBAR_PAGE_SIZE > 200:
    raise ImproperlyConfigured(
        f"CHAT_SIDEBAR_PAGE_SIZE must be at most 200, not {CHAT_SIDEBAR_PAGE_SIZE}."
    )
# Searches of their own conversations one user may make a minute (the sidebar searches as
# the user types, after a pause), and how many searches one server process runs at once
# (one user's one at a time): a burst of slow searches never holds up anyone's page.
SEARCH_RATE_PER_MINUTE = env_int("SEARCH_RATE_PER_MINUTE", 60, minimum=1)
SEARCH_WORKERS = env_int("SEARCH_WORKERS", 2, minimum=1)
# Threads for post-stream work (the save and the hooks), apart from the default executor that
# Django itself needs (e.g. to log an error response): saves waiting for a pooled connection
# must never starve it.
POST_STREAM_WORKERS = env_int("POST_STREAM_WORKERS", 8, minimum=1)
# Per-user limits (staff override them per user in the admin), shared by the chat and the API.
RATE_LIMIT_PER_MINUTE = env_int("RATE_LIMIT_PER_MINUTE", 20, minimum=0)
MAX_CONCURRENT_STREAMS = env_int("MAX_CONCURRENT_STREAMS", 3, minimum=1)
# Readers one user may have open in one server process (responses and WebSocket follows of
# their answers); one re-attaching past it gets a 429. The response that starts an answer is
# always let through (MAX_CONCURRENT_STREAMS bounds those).
MAX_READERS_PER_USER = env_int("MAX_READERS_PER_USER", 20, minimum=1)
# Times one user may re-attach to answers in a minute (a reload, a dropped connection, a
# socket's attach): each replays the answer so far, and a loop of them took a process's CPU.
READER_ATTACHES_PER_MINUTE = env_int("READER_ATTACHES_PER_MINUTE", 120, minimum=1)
# Answers one server process runs at once, all users together; beyond it a new request gets
# a 503 with Retry-After before anything is counted or written. 0: no limit.
MAX_RUNNING_TURNS = env_int("MAX_RUNNING_TURNS", 500, minimum=0)
# Connections kept open to each model endpoint: as many as answers may run, by default, so
# that no admitted answer queues for one (`check` warns when it is fewer: conversations.W002).
LLM_MAX_CONNECTIONS = env_int("LLM_MAX_CONNECTIONS", MAX_RUNNING_TURNS or 500, minimum=1)
DAILY_TOKEN_QUOTA = env_int("DAILY_TOKEN_QUOTA", 0, minimum=0)  # 0: no quota
# Where a quota applies, each answer reserves its prompt and its max_tokens before it starts,
# or this many tokens for an answer whose client set no limit (as many as are left, if fewer).
DAILY_TOKEN_QUOTA_ANSWER_TOKENS = env_int("DAILY_TOKEN_QUOTA_ANSWER_TOKENS", 1000, minimum=1)
# How long a server process keeps its own copy of per-user rows read on every request (an API
# key's owner): conversations.accounts.local_cache. A change drops the copies in every
# process at once through the channel layer; this bounds the staleness should that notice be
# lost. Without Redis no other process could be told (the layer is in memory), so nothing is
# cached: 0.
PROCESS_CACHE_SECONDS = env_float("PROCESS_CACHE_SECONDS", 30.0 if REDIS_URL else 0.0)
SSE_KEEPALIVE_SECONDS = env_float("SSE_KEEPALIVE_SECONDS", 15.0, minimum=0.05)
# How a turn outlives failures (docs/streaming.md, "When things fail"). While an answer
# streams, its runner writes the partial text and a heartbeat to its row at most this often,
# all of one process's running answers in one statement.
TURN_CHECKPOINT_SECONDS = env_float("TURN_CHECKPOINT_SECONDS", 2.0, minimum=0.05)
# An answer still "streaming" whose heartbeat is older than this lost its process: it is
# marked interrupted, keeping its checkpointed text (at start-up, every minute, and by
# `manage.py close_interrupted_turns`).
TURN_HEARTBEAT_STALE_SECONDS = env_float("TURN_HEARTBEAT_STALE_SECONDS", 30.0, minimum=0.1)
# When the database cannot take a finished turn after a few quick retries, the turn goes to
# an fsynced append-only file in this directory (one per process), replayed into the
# database once it is back (automatically, or by `manage.py replay_spooled_turns`).
TURN_SPOOL_DIR = Path(env_str("TURN_SPOOL_DIR", str(BASE_DIR / "var" / "spool")))
TURN_SAVE_RETRIES = env_int("TURN_SAVE_RETRIES", 3, minimum=0)
# On SIGTERM: refuse new answers (503), let running ones finish for this long, then end the
# rest as interrupted. Give the process manager's stop timeout a few seconds more.
SHUTDOWN_GRACE_SECONDS = env_float("SHUTDOWN_GRACE_SECONDS", 30.0, minimum=0)
# The longest a user waits for the model's first word, per surface; then the turn fails with
# a 504. LLM_READ_TIMEOUT still bounds every silence, retries included.
FIRST_TOKEN_DEADLINE_SECONDS = {
    "chat": env_float("CHAT_FIRST_TOKEN_DEADLINE", 120.0, minimum=0.1),
    "api": env_float("SITE_API_FIRST_TOKEN_DEADLINE", 120.0, minimum=0.1),
    "v1": env_float("V1_FIRST_TOKEN_DEADLINE", 300.0, minimum=0.1),
}
# Extra dotted paths called in order with each finished turn, after the save, however the
# stream ended. The save itself is not listed: it always runs first (conversations.turns.hooks).
POST_STREAM_HOOKS = env_list("POST_STREAM_HOOKS")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # The HTTP client logs every request at INFO; that is noise on a busy proxy.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        # The pool logs every failed attempt to reconnect (several a second while the
        # database is away); chatsite says once that the database does not answer.
        "psycopg.pool": {"level": "ERROR"},
    },
}
CSRF_FAILURE_VIEW = "conversations.web.views.csrf_failure"
