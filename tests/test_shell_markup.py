"""The shell's text conversions (pure): what Slack does to a typed command's text, and Slack markup as a
terminal shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from bot.shell.markup import EMOJI, ESCAPED_COMMANDS, Names, escape_command, format_date, render

pytestmark = pytest.mark.backend_independent  # its own SQLite database or none (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]
NAMES = Names(users={"U0BOB0001": "bob", "U0ALICE01": "alice"}, channels={"C000000001": "general",
                                                                        "C000000007": "inc-1-checkout-down"},
              groups={"S0ONCALL1": "oncall", "S0VPENG01": "vp-eng"})


def test_the_escaped_commands_are_the_manifests() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    escaped = {c["command"] for c in manifest["features"]["slash_commands"] if c.get("should_escape")}
    assert escaped == ESCAPED_COMMANDS


def test_mentions_and_channels_are_escaped_for_should_escape_commands() -> None:
    assert escape_command("/incident", "assign @bob", NAMES) == "assign <@U0BOB0001|bob>"
    assert escape_command("/page", "@oncall Checkout is down, see #inc-1-checkout-down.", NAMES) == \
        "<!subteam^S0ONCALL1|@oncall> Checkout is down, see <#C000000007|inc-1-checkout-down>."
    assert escape_command("/oncall", "override primary @Bob 4h", NAMES) == "override primary <@U0BOB0001|bob> 4h"
    assert escape_command("/incident", "update @here it's back", NAMES) == "update <!here> it's back"
    # a name Slack does not know, an e-mail address and a ticket number stay as typed
    assert escape_command("/page", "@nobody mail carol@acme.test about #42", NAMES) == \
        "@nobody mail carol@acme.test about #42"


def test_other_commands_get_only_the_entities() -> None:
    assert escape_command("/health", "prod @bob #general", NAMES) == "prod @bob #general"
    assert escape_command("/incident", "open P1 A & B <x>", NAMES) == "open P1 A &amp; B &lt;x&gt;"
    assert escape_command("/silence", "a<b 1h", NAMES) == "a&lt;b 1h"


def test_markup_reads_as_a_person_sees_it() -> None:
    text = ("<@U0BOB0001> and <@U0ZZZ0001|zed> in <#C000000007> / <#C000000099|gone>, ping <!subteam^S0VPENG01> "
            "<!subteam^S0NEW0001|@new-team> <!here>: see <https://ci.example/run/1|the run> or "
            "<https://example.com> or <mailto:ops@acme.test|ops@acme.test> &lt;tag&gt; &amp; :warning: "
            ":white_check_mark: :made_up: 10:30:00")
    assert render(text, NAMES) == (
        "@bob and @zed in #inc-1-checkout-down / #gone, ping @vp-eng @new-team @here: see the run "
        "(https://ci.example/run/1) or https://example.com or ops@acme.test <tag> & ⚠️ ✅ :made_up: 10:30:00")


def test_opsbots_own_shortcodes_all_have_an_emoji() -> None:
    import re

    used = set()
    for path in [*ROOT.joinpath("bot").rglob("*.py"), *ROOT.joinpath("commands").rglob("*.py")]:
        if "shell" in path.parts:
            continue
        used |= set(re.findall(r"(?<![\w:/]):([a-z][a-z0-9_]+):(?![\w/])", path.read_text(encoding="utf-8")))
    known_words = {"memory"}  # `sqlite:///:memory:` is no shortcode, but harmless
    assert used - set(EMOJI) - known_words == set()


def test_dates_are_shown_in_the_readers_zone() -> None:
    zone = timezone(timedelta(hours=1))
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    at = int(datetime(2026, 1, 5, 9, 30, tzinfo=UTC).timestamp())
    assert render(f"since <!date^{at}^{{date_short_pretty}} {{time}}|Mon 09:30 UTC>", NAMES, now=now, zone=zone) \
        == "since today 10:30"
    tomorrow = at + 86400
    assert format_date(tomorrow, "{date_short_pretty} {time}", now=now, zone=zone) == "tomorrow 10:30"
    later = at + 3 * 86400
    assert format_date(later, "{date_short_pretty} at {time_secs} ({date_num})", now=now, zone=zone) == \
        "Jan 8, 2026 at 10:30:00 (2026-01-08)"
    assert format_date(at, "{ago}", now=now, zone=zone) == "2 hours ago"
    # an epoch a terminal cannot show falls back to the fallback text
    assert render("<!date^99999999999999999^{date}|sometime>", NAMES) == "sometime"
