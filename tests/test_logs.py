import logging
from types import SimpleNamespace

import pytest
import requests
from helpers import bot_for
from hypothesis import given, settings
from hypothesis import strategies as st

from clock import utc_now
from i18n import Reader
from logs import REDACTED, Redactor, setup_logging
from readers import Readers

TOKEN = "123456:AAbbCCddEEffGGhhIIjjKKll"


@pytest.fixture(autouse=True)
def restore_logging():
    root, telebot_logger = logging.getLogger(), logging.getLogger("TeleBot")
    saved = (root.handlers[:], root.level, telebot_logger.handlers[:], telebot_logger.propagate)
    yield
    root.handlers[:], _, telebot_logger.handlers[:], telebot_logger.propagate = saved
    root.setLevel(saved[1])


def test_secrets_are_redacted_from_messages_arguments_and_tracebacks(capsys):
    setup_logging("DEBUG", [TOKEN, "my passphrase"])
    log = logging.getLogger("anything")
    log.info("calling https://api.telegram.org/bot%s/getMe", TOKEN)
    log.debug("passphrase is my passphrase")
    try:
        raise requests.ConnectionError(f"Max retries exceeded with url: /bot{TOKEN}/getUpdates")
    except requests.ConnectionError:
        log.exception("polling failed")
    # pyTelegramBotAPI's own logger used to print through a handler of its own
    logging.getLogger("TeleBot").error("url quoted: /bot123456%3AAAbbCCddEEffGGhhIIjjKKll/x")
    output = capsys.readouterr().err
    assert output.count(REDACTED) == 4  # the traceback shows the raise line's source, not the URL
    assert "AAbbCCddEEffGGhhIIjjKKll" not in output and "my passphrase" not in output
    assert "Traceback" in output and "getUpdates" in output


def test_alerts_to_admins_carry_no_secret(fake):
    from config import load_settings
    from outbox import Outbox

    settings = load_settings(
        {"BOT_TOKEN": fake.token, "ADMIN_IDS": "7,8", "BACKUP_PASSPHRASE": "hunter2hunter2"}
    )
    Outbox(bot_for(fake), settings, lambda _: Reader("en")).alert(
        f"failed: https://api.telegram.org/bot{fake.token}/x with hunter2hunter2"
    )
    for admin in (7, 8):
        (message,) = fake.messages(admin)
        assert message["text"] == f"failed: https://api.telegram.org/bot{REDACTED}/x with {REDACTED}"


def test_admin_panel_replies_carry_no_secret(fake):
    from admin_panel import AdminPanel
    from config import load_settings

    settings = load_settings({"BOT_TOKEN": fake.token, "ADMIN_IDS": "7"})
    panel = AdminPanel(bot_for(fake), None, None, None, settings, Readers(settings), utc_now)
    admin = SimpleNamespace(id=7, language_code=None)
    # what a requests ConnectionError from a panel job says
    panel.say(
        SimpleNamespace(chat=admin, from_user=admin),
        f"❌ Max retries exceeded with url: /bot{fake.token}/getFile",
    )
    (message,) = fake.messages(7)
    assert message["text"] == f"❌ Max retries exceeded with url: /bot{REDACTED}/getFile"


def test_every_credential_is_a_secret_session_tokens_and_url_passwords_included(fake):
    from config import load_settings
    from outbox import Outbox

    settings = load_settings(
        {
            "BOT_TOKEN": fake.token,
            "ADMIN_IDS": "7",
            "BACKUP_PASSPHRASE": "pass phrase words",
            "AWS_SECRET_ACCESS_KEY": "aws-secret-key",
            "AWS_SESSION_TOKEN": "aws-session-token",
            "S3_ENDPOINT_URL": "https://minio:url-password@s3.example.com",
        }
    )
    leaked = "; ".join(
        ["pass phrase words", "aws-secret-key", "aws-session-token", "url-password", fake.token]
    )
    Outbox(bot_for(fake), settings, lambda _: Reader("fa")).alert(f"error: {leaked}")
    (message,) = fake.messages(7)
    for secret in ("pass phrase words", "aws-secret-key", "aws-session-token", "url-password", fake.token):
        assert secret not in message["text"]
    assert message["text"].count(REDACTED) == 5


# --- a secret is redacted where it stands whole; a long one wherever it appears -------------------

WORD = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "Nd")), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    secret=WORD.filter(lambda w: len(w) < Redactor.ANYWHERE),
    words=st.lists(WORD, max_size=12),
    where=st.data(),
)
def test_a_short_secret_is_redacted_only_as_a_whole_word(secret, words, where):
    redact = Redactor([secret])
    # the secret inside longer words only: nothing is mangled
    tokens = [w for w in words if w != secret] + [f"e{secret}ists", f"{secret}s", f"x{secret}"]
    assert redact(" ".join(tokens)) == " ".join(tokens)
    # and standing whole among them: that one, and only that one, is redacted
    spot = where.draw(st.integers(0, len(tokens)))
    said = " ".join([*tokens[:spot], secret, *tokens[spot:]])
    assert redact(said) == " ".join([*tokens[:spot], REDACTED, *tokens[spot:]])


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(min_size=Redactor.ANYWHERE, max_size=40).filter(str.strip), around=st.tuples(WORD, WORD)
)
def test_a_long_secret_is_redacted_wherever_it_appears(secret, around):
    text = f"{around[0]}{secret}{around[1]} and /bot{secret}/getMe"
    redacted = Redactor([secret])(text)
    assert secret not in redacted and redacted.count(REDACTED) == 2


def test_a_short_webhook_secret_does_not_mangle_the_words_around_it():
    redact = Redactor(["xis", TOKEN])
    assert redact("The file exists already; xis was sent") == f"The file exists already; {REDACTED} was sent"
    assert redact(f"/bot{TOKEN}/getMe") == f"/bot{REDACTED}/getMe"
