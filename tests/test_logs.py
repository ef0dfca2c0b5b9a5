import logging
from types import SimpleNamespace

import pytest
import requests
from helpers import INTERNAL_REPR, bot_for
from hypothesis import given
from hypothesis import strategies as st

from clock import utc_now
from i18n import BIDI_CONTROLS, Code, Joined, Reader, Size, Text
from logs import REDACTED, setup_logging
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

    settings = load_settings({"BOT_TOKEN": fake.token, "ADMIN_IDS": "7,8", "BACKUP_PASSPHRASE": "hunter2"})
    Outbox(bot_for(fake), settings, lambda _: Reader("en")).alert(
        f"failed: https://api.telegram.org/bot{fake.token}/x with hunter2"
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
            "BACKUP_PASSPHRASE": "pass phrase",
            "AWS_SECRET_ACCESS_KEY": "aws-secret-key",
            "AWS_SESSION_TOKEN": "aws-session-token",
            "S3_ENDPOINT_URL": "https://minio:url-password@s3.example.com",
        }
    )
    leaked = "; ".join(["pass phrase", "aws-secret-key", "aws-session-token", "url-password", fake.token])
    Outbox(bot_for(fake), settings, lambda _: Reader("fa")).alert(f"error: {leaked}")
    (message,) = fake.messages(7)
    for secret in ("pass phrase", "aws-secret-key", "aws-session-token", "url-password", fake.token):
        assert secret not in message["text"]
    assert message["text"].count(REDACTED) == 5


values = st.recursive(
    st.one_of(
        st.builds(Code, st.text(), st.one_of(st.none(), st.integers(1, 50))),
        st.builds(Size, st.integers(0, 1 << 50)),
        st.text(),
        st.integers(),
    ),
    lambda inner: st.one_of(
        st.builds(lambda v: Text("{v} may still be writing", v=v), inner),
        st.builds(lambda a, b: Joined([Text("{a}", a=a), Text("{b}", b=b)]), inner, inner),
    ),
    max_leaves=5,
)


@given(values)
def test_a_log_line_shows_values_as_people_read_them_never_their_insides(value):
    record = logging.LogRecord(
        "lifecycle", logging.INFO, __file__, 1, "%s may still be writing", (value,), None
    )
    line = record.getMessage()
    assert not INTERNAL_REPR.search(line), line
    if isinstance(value, Code) and value.most is None:  # the text itself, as it is
        assert line == f"{value.text.translate(BIDI_CONTROLS)} may still be writing"
