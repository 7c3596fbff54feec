"""Notebook panels of the Tableau export: the `HyperRefresher`, and publishing with sharing.

`export_panel` returns an `ExportPanel`: start / stop / refresh-now buttons and live counters
(rows in the extract, last refresh, duration, errors), redrawn by a daemon thread every
``refresh_s`` seconds; ``panel.close()`` stops that thread. Widgets do not render on GitHub:
print `summary_text` after a run to leave a readable trace in the notebook.

`share_panel` returns a `SharePanel`: a user name field and a "Publier et partager" button that
calls `sales_stream.export.publish.publish` with ``share_with`` (settings from the environment)
and shows the outcome, or the one-line reason it failed, in French.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import ipywidgets as widgets

from sales_stream.errors import SalesStreamError
from sales_stream.export.publish import PublishResult, PublishSettings, publish
from sales_stream.export.refresher import HyperRefresher, RefresherStats
from sales_stream.ui.format import badge, counters, fr_int, fr_seconds, fr_time, warning

log = logging.getLogger(__name__)

_STATE_LABELS = {"idle": "prêt", "running": "en cours", "stopped": "arrêté"}
_STATE_COLOURS = {"idle": "#6c757d", "running": "#198754", "stopped": "#495057"}
_ERROR_COLOUR = "#dc3545"


def summary_text(stats: RefresherStats) -> str:
    """Return a French multi-line summary of refresher stats, for static notebook outputs.

    Args:
        stats: A snapshot from `HyperRefresher.stats`.

    Returns:
        Three lines (four while failing): state and file, rows, last refresh and counters.
    """
    lines = [
        f"Export Hyper {_STATE_LABELS[stats.state]} : {stats.path} "
        f"(rafraîchi toutes les {fr_seconds(stats.interval_s)}).",
        f"Lignes dans l'extrait : {fr_int(stats.rows)} "
        f"(+{fr_int(stats.last_added)} au dernier rafraîchissement).",
    ]
    if stats.last_refresh is None:
        lines.append(f"Aucun rafraîchissement réussi · échecs : {fr_int(stats.errors)}.")
    else:
        lines.append(
            f"Dernier rafraîchissement : {fr_time(stats.last_refresh)} "
            f"en {fr_seconds(stats.last_duration_s or 0.0)} · "
            f"réussis : {fr_int(stats.refreshes)} · échecs : {fr_int(stats.errors)}."
        )
    if stats.last_error:
        lines.append(f"Dernière erreur (nouvel essai au prochain cycle) : {stats.last_error}")
    return "\n".join(lines)


def _stats_html(stats: RefresherStats) -> str:
    failing = stats.last_error is not None
    colour = _ERROR_COLOUR if failing else _STATE_COLOURS[stats.state]
    label = _STATE_LABELS[stats.state] + (" — en échec" if failing else "")
    cells = [
        ("Lignes", fr_int(stats.rows)),
        ("Ajoutées (dernier)", fr_int(stats.last_added)),
        ("Dernier rafraîchissement", fr_time(stats.last_refresh)),
        ("Durée", "—" if stats.last_duration_s is None else fr_seconds(stats.last_duration_s)),
        ("Réussis", fr_int(stats.refreshes)),
        ("Échecs", fr_int(stats.errors)),
    ]
    parts = [f"{badge(label, colour)} <code>{html.escape(stats.path)}</code>", counters(cells)]
    if stats.last_error:
        parts.append(warning(f"{stats.last_error} (nouvel essai au prochain cycle)", _ERROR_COLOUR))
    return "".join(parts)


class ExportPanel(widgets.VBox):
    """The refresher's panel; see `export_panel`.

    Attributes:
        start_button: Starts the refresher thread.
        stop_button: Stops it after the refresh in progress.
        now_button: Asks for a refresh without waiting for the interval.
        counters: State badge, counters and the last error.
    """

    def __init__(self, refresher: HyperRefresher, *, refresh_s: float = 1.0) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s}")
        self.refresher = refresher
        self._refresh_s = refresh_s
        self._closed = threading.Event()
        self.start_button = widgets.Button(
            description="Démarrer", icon="play", button_style="success"
        )
        self.stop_button = widgets.Button(description="Arrêter", icon="stop", button_style="danger")
        self.now_button = widgets.Button(description="Rafraîchir maintenant", icon="refresh")
        self.counters = widgets.HTML()
        self.start_button.on_click(lambda _b: self._act(refresher.start))
        self.stop_button.on_click(lambda _b: self._act(refresher.stop))
        self.now_button.on_click(lambda _b: self._act(refresher.refresh_now))
        super().__init__(
            [widgets.HBox([self.start_button, self.stop_button, self.now_button]), self.counters]
        )
        self.refresh()
        self._redrawer = threading.Thread(target=self._loop, name="export-panel", daemon=True)
        self._redrawer.start()

    def refresh(self) -> RefresherStats:
        """Redraw the counters and button states; return the stats shown."""
        stats = self.refresher.stats
        self.counters.value = _stats_html(stats)
        running = stats.state == "running"
        self.start_button.disabled = running
        self.stop_button.disabled = not running
        self.now_button.disabled = not running
        return stats

    def close(self) -> None:
        """Stop redrawing and close the widgets (the refresher keeps running)."""
        self._closed.set()
        if self._redrawer is not threading.current_thread():
            self._redrawer.join(self._refresh_s + 1.0)
        for child in (self.start_button, self.stop_button, self.now_button, self.counters):
            child.close()
        self.children[0].close()
        super().close()

    def _act(self, action: Callable[[], object]) -> None:
        try:
            action()
        except TimeoutError as exc:
            log.warning("export panel: %s", exc)
        self.refresh()

    def _loop(self) -> None:
        while not self._closed.wait(self._refresh_s):
            try:
                self.refresh()
            except Exception:
                log.exception("redrawing the export panel failed")


def export_panel(refresher: HyperRefresher, *, refresh_s: float = 1.0) -> ExportPanel:
    """Return a live panel of ``refresher`` (display it as the cell's last value).

    Args:
        refresher: The refresher to show and control (idle, running or stopped).
        refresh_s: Seconds between two redraws (background thread).

    Raises:
        ValueError: If ``refresh_s`` is not positive.
    """
    return ExportPanel(refresher, refresh_s=refresh_s)


def share_text(result: PublishResult) -> str:
    """French one-line summary of a publication."""
    text = f"Publié : source de données {result.datasource_id}"
    if result.workbook_id:
        text += f", classeur {result.workbook_id}"
    if result.shared_with:
        text += f" ; accès en lecture (View) accordé à {result.shared_with}"
    return text + "."


class SharePanel(widgets.VBox):
    """Publish the extract and its packaged workbook, then grant a user View; see `share_panel`.

    Attributes:
        user: Name of the site user to share with (empty: publish only).
        button: Publishes (and shares) when clicked.
        status: The outcome or the reason it failed.
    """

    def __init__(
        self, hyper_path: Path, *, workbook_path: Path | None, project: str, user: str
    ) -> None:
        self._hyper_path = Path(hyper_path)
        self._workbook_path = workbook_path
        self._project = project
        self.user = widgets.Text(value=user, description="Utilisateur", placeholder="nom Tableau")
        self.button = widgets.Button(
            description="Publier et partager", icon="share", button_style="primary"
        )
        self.status = widgets.HTML()
        self.button.on_click(lambda _b: self.share())
        super().__init__([widgets.HBox([self.user, self.button]), self.status])

    def share(self) -> PublishResult | None:
        """Publish and share now; return the result, or None after showing the error."""
        self.button.disabled = True
        try:
            result = publish(
                self._hyper_path,
                workbook_path=self._workbook_path,
                project=self._project,
                settings=PublishSettings.from_env(),
                share_with=self.user.value.strip() or None,
            )
        except (SalesStreamError, OSError) as exc:
            self.status.value = warning(f"Échec de la publication : {exc}", _ERROR_COLOUR)
            return None
        finally:
            self.button.disabled = False
        self.status.value = badge(html.escape(share_text(result)), _STATE_COLOURS["running"])
        return result


def share_panel(
    hyper_path: Path,
    *,
    workbook_path: Path | None = None,
    project: str = "default",
    user: str = "",
) -> SharePanel:
    """Return a panel publishing ``hyper_path`` (and its ``.twbx``) and sharing it with a user.

    Args:
        hyper_path: The extract to publish as a data source.
        workbook_path: The workbook to publish with it (``.twbx`` or ``.twb``).
        project: Target project on the site.
        user: Initial value of the user name field.
    """
    return SharePanel(hyper_path, workbook_path=workbook_path, project=project, user=user)
