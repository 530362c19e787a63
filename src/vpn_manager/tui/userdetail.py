"""One user on one screen: usage, limits, the subscription URL, and every link with its QR code
(`vpn user show`, `vpn user link --subscription` and `vpn user link --qr`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Footer, Label, Static

from vpn_manager.delivery.qr import qr_text
from vpn_manager.errors import NotFound, VpnError
from vpn_manager.models import User
from vpn_manager.tui.shell import Shell
from vpn_manager.tui.userform import last_day
from vpn_manager.tui.widgets import start
from vpn_manager.tui.wording import in_tui_words
from vpn_manager.units import format_rate, format_size
from vpn_manager.web.urls import settings_base_url, subscription_url

if TYPE_CHECKING:
    from vpn_manager.services.servers import Access


def limits_text(user: User, zone: Any) -> str:
    used = user.period_upload_bytes + user.period_download_bytes
    quota = (
        f"{format_size(used)} of {format_size(user.quota_bytes)} this period"
        f" ({used * 100 // user.quota_bytes}%)"
        if user.quota_bytes
        else f"{format_size(used)} this period, no quota"
    )
    lines = [
        f"status      {user.status.value}",
        f"used        ↑ {format_size(user.upload_bytes)}  ↓ {format_size(user.download_bytes)}"
        " in all",
        f"quota       {quota}, resets {user.reset_period}",
        f"expires     {last_day(user, zone) or 'never'}"
        + (
            f" (or {user.expire_after_days} days after first use)" if user.expire_after_days else ""
        ),
        f"devices     {user.device_limit or 'unlimited'}",
        f"servers     {', '.join(user.servers) or '-'}",
    ]
    if user.speed_limit_bps:  # set by an earlier version, which stored what nothing enforces
        lines.append(f"speed       {format_rate(user.speed_limit_bps)} (not enforced)")
    if user.email:
        lines.append(f"e-mail      {user.email}")
    if user.note:
        lines.append(f"note        {user.note}")
    return "\n".join(lines)


class UserDetail(ModalScreen[None]):
    """Usage, limits, the subscription URL, and every link of one user with its QR code
    (`vpn user show`, `vpn user link --subscription` and `vpn user link --qr` on one screen)."""

    DEFAULT_CSS = """
    UserDetail { align: center middle; }
    UserDetail > VerticalScroll {
        width: 100%; height: 100%; border: thick $accent; background: $panel; padding: 0 1;
    }
    UserDetail .qr { width: auto; height: auto; margin: 1 0; }
    UserDetail .link { color: $text-accent; }
    UserDetail .note { color: $warning; }
    UserDetail .server { text-style: bold; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("c", "copy", "Copy link"),
    ]

    def __init__(self, user: User, qr_first: bool = False) -> None:
        super().__init__()
        self.user = user
        self.qr_first = qr_first
        self.accesses: list[Access] = []

    @property
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail") as box:
            box.border_title = self.user.name
            yield Static(limits_text(self.user, self.vpn.backend.settings.zone), markup=False)
            yield Static("Subscription: loading …", id="subscription", classes="link", markup=False)
            yield Static("Links: loading …", id="links-title", classes="server")
            yield Button("Close", id="close")
        yield Footer()

    def on_mount(self) -> None:
        start(self, self._links)

    async def _subscription(self) -> None:
        """The user's subscription URL (served by `vpn web`): every server, in their app."""
        line = self.query_one("#subscription", Static)
        try:
            base = settings_base_url(self.vpn.backend.settings.web)
            token = await self.vpn.backend.users.subscription_token(self.user.name)
        except VpnError as exc:
            line.update(f"Subscription: {exc.message}")
            return
        line.update(f"Subscription (vpn web serves it): {subscription_url(base, token)}")

    async def _links(self) -> None:
        await self._subscription()
        title = self.query_one("#links-title", Static)
        try:
            self.accesses = await self.vpn.backend.servers.access(self.user.name)
        except NotFound as exc:
            hint = f" ({in_tui_words(exc.hint)})" if exc.hint else ""
            title.update(f"Links: {in_tui_words(exc.message)}{hint}")
            return
        except VpnError as exc:
            title.update(f"Links: {in_tui_words(exc.message)}")
            return
        title.update(f"Links ({len(self.accesses)}): c copies the first one")
        box = self.query_one("#detail", VerticalScroll)
        for access in self.accesses:
            widgets: list[Widget] = [
                Label(f"{access.server} ({access.protocol})", classes="server"),
                Static(access.link.rstrip("\n"), classes="link", markup=False),
            ]
            if access.note:
                widgets.append(Static(access.note, classes="note", markup=False))
            try:
                widgets.append(Static(qr_text(access.link), classes="qr", markup=False))
            except VpnError as exc:
                widgets.append(Static(f"No QR code: {exc.message}", markup=False))
            await box.mount_all(widgets, before=self.query_one("#close"))
        if self.qr_first and self.accesses:
            self.query(".qr").first().scroll_visible(animate=False)

    def on_button_pressed(self, _event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        if self.accesses:
            self.app.copy_to_clipboard(self.accesses[0].link)
            self.app.notify(f"Copied the {self.accesses[0].server} link.")
