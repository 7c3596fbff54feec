"""Notebook panels of the Tableau export: the extract's runtime, and publishing with sharing.

`export_panel` returns an `ExportPanel` for the `StreamWorker` of the Kafka → Hyper runtime
(`sales_stream.app.Stack.hyper_worker`): start / stop buttons and its live `StreamStats` in
French (state, rows written, lag, last checkpoint), redrawn by a daemon thread every
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
from pathlib import Path

import ipywidgets as widgets

from sales_stream.errors import ConfigError, SalesStreamError
from sales_stream.export.publish import ENV_VARS, PublishResult, PublishSettings, publish
from sales_stream.stream import StreamStats, StreamWorker
from sales_stream.ui.consumer_panel import status_fr
from sales_stream.ui.format import badge, counters, fr_int, fr_plural, fr_time, warning

log = logging.getLogger(__name__)

_OK_COLOUR = "#198754"
_STOPPED_COLOUR = "#495057"
_ERROR_COLOUR = "#dc3545"


def _extract_path(worker: StreamWorker) -> str:
    return str(getattr(worker.runtime.sinks[0], "path", "?"))


def summary_text(stats: StreamStats, *, path: str | Path) -> str:
    """A static French summary of the extract's runtime, for notebook outputs.

    Args:
        stats: A snapshot from `StreamWorker.stats` of the ``hyper`` runtime.
        path: The extract it writes.

    Returns:
        Three lines (four after an error): state and file, rows, lag and last checkpoint.
    """
    lines = [
        f"Extrait Hyper : {status_fr(stats)} ({path}).",
        f"Lignes écrites : {fr_int(stats.stored)} ; déjà présentes : {fr_int(stats.duplicates)} ; "
        f"messages lus : {fr_int(stats.consumed)} ; lots : {fr_int(stats.batches)}.",
        f"Retard : {fr_plural(stats.total_lag, 'message')} ; dernier point de contrôle : "
        f"{fr_time(stats.last_commit, never='aucun')}.",
    ]
    if stats.last_error:
        lines.append(f"Dernière erreur : {stats.last_error}")
    return "\n".join(lines)


def _stats_html(stats: StreamStats, *, path: str, running: bool) -> str:
    if not stats.healthy and running:
        colour = _ERROR_COLOUR
    else:
        colour = _OK_COLOUR if running else _STOPPED_COLOUR
    cells = [
        ("Lignes écrites", fr_int(stats.stored)),
        ("Déjà présentes", fr_int(stats.duplicates)),
        ("Retard (messages)", fr_int(stats.total_lag)),
        ("Lots", fr_int(stats.batches)),
        ("Dernier point de contrôle", fr_time(stats.last_commit, never="aucun")),
    ]
    parts = [
        f"<b>Extrait Hyper</b> {badge(status_fr(stats), colour)} <code>{html.escape(path)}</code>",
        counters(cells),
    ]
    if stats.last_error:
        parts.append(warning(stats.last_error, _ERROR_COLOUR))
    return "".join(parts)


class ExportPanel(widgets.VBox):
    """The extract runtime's panel; see `export_panel`.

    Attributes:
        start_button: Starts the worker (again after a stop).
        stop_button: Stops it after its checkpoint in progress (in the background).
        counters: State badge, counters and the last error.
    """

    def __init__(self, worker: StreamWorker, *, refresh_s: float = 1.0) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s}")
        self.worker = worker
        self.path = _extract_path(worker)
        self._refresh_s = refresh_s
        self._closed = threading.Event()
        self.start_button = widgets.Button(
            description="Démarrer", icon="play", button_style="success"
        )
        self.stop_button = widgets.Button(description="Arrêter", icon="stop", button_style="danger")
        self.counters = widgets.HTML()
        self.start_button.on_click(lambda _b: self._start())
        self.stop_button.on_click(lambda _b: self._stop())
        super().__init__([widgets.HBox([self.start_button, self.stop_button]), self.counters])
        self.refresh()
        self._redrawer = threading.Thread(target=self._loop, name="export-panel", daemon=True)
        self._redrawer.start()

    def refresh(self) -> StreamStats:
        """Redraw the counters and button states; return the stats shown."""
        stats = self.worker.stats
        running = self.worker.running
        self.counters.value = _stats_html(stats, path=self.path, running=running)
        self.start_button.disabled = running
        self.stop_button.disabled = not running
        return stats

    def close(self) -> None:
        """Stop redrawing and close the widgets (the worker keeps running)."""
        self._closed.set()
        if self._redrawer is not threading.current_thread():
            self._redrawer.join(self._refresh_s + 1.0)
        for child in (self.start_button, self.stop_button, self.counters):
            child.close()
        self.children[0].close()
        super().close()

    def _start(self) -> None:
        if not self.worker.running:
            self.worker.start()
        self.refresh()

    def _stop(self) -> None:
        self.stop_button.disabled = True
        # The graceful stop writes and commits what was polled: keep the kernel responsive.
        threading.Thread(target=self.worker.stop, name="export-stop", daemon=True).start()

    def _loop(self) -> None:
        while not self._closed.wait(self._refresh_s):
            try:
                self.refresh()
            except Exception:
                log.exception("redrawing the export panel failed")


def export_panel(worker: StreamWorker, *, refresh_s: float = 1.0) -> ExportPanel:
    """Return a live panel of the extract's ``worker`` (display it as the cell's last value).

    Args:
        worker: The ``hyper`` runtime's worker (`Stack.hyper_worker`), started or not.
        refresh_s: Seconds between two redraws (background thread).

    Raises:
        ValueError: If ``refresh_s`` is not positive.
    """
    return ExportPanel(worker, refresh_s=refresh_s)


def publish_missing_text() -> str | None:
    """``None`` when publishing to Tableau is configured, else the French line saying what to set.

    (`PublishSettings.from_env`'s own message is in English, for the command line.)
    """
    try:
        PublishSettings.from_env()
    except ConfigError:
        return (
            f"publication non configurée : renseignez {', '.join(ENV_VARS[:-1])} et "
            f"{ENV_VARS[-1]} dans l'environnement ou dans .env (une valeur manque ou est "
            "invalide ; TABLEAU_SITE peut rester vide pour le site par défaut d'un Tableau Server)"
        )
    return None


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
        self.status.value = badge(share_text(result), _OK_COLOUR)
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
