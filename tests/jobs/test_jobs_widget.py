"""The jobs widget with a real worker (in process, as the embedded demo runs one): live
progress, and a cancel button only for what the viewer may cancel."""

from __future__ import annotations

import threading

from nexml_ext.jobs import Worker
from nexml_ext.jupyter.widgets import jobs_view

from .conftest import wait_for

EVIL = "<script>alert(1)</script>"


def test_the_jobs_widget_shows_live_progress_and_cancels_what_the_viewer_may(stack):
    queued = stack.dana.submit_job("selftest", {"seconds": 600, "steps": 1000})
    waiting = stack.mark.submit_job("selftest", {"seconds": 0, "fail": EVIL})
    worker = Worker(stack.admin, heartbeat_seconds=0.2, stale_after=30)
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True})
    thread.start()
    try:
        wait_for(lambda: stack.dana.job(queued.id), lambda j: j.progress > 0, "progress")
        dana, cora, mark = jobs_view(stack.dana), jobs_view(stack.cora), jobs_view(stack.mark)
        assert [j.id for j in dana.jobs] == [queued.id]  # data scientists see their own
        assert 0 < dana.progress[queued.id].value < 1
        assert set(dana.cancel_buttons) == {queued.id}  # her own job
        assert set(cora.progress) == {queued.id, waiting.id}
        assert cora.cancel_buttons == {}  # a compliance officer cancels only her own
        assert set(mark.cancel_buttons) == {queued.id, waiting.id}  # a manager: any

        before = dana.progress[queued.id].value
        wait_for(lambda: stack.dana.job(queued.id), lambda j: j.progress > before, "more")
        dana.refresh_button.click()
        assert dana.progress[queued.id].value > before  # the bar follows the worker

        mark.cancel_buttons[queued.id].click()
        assert mark.message.text == f"job {queued.id} selftest: cancel requested"
        assert queued.id not in mark.cancel_buttons  # asked once; no second button
        assert "cancelling" in mark._rows[queued.id].children[2].value
        wait_for(lambda: stack.dana.job(queued.id), lambda j: j.status == "cancelled",
                 "the cancel")
        # Mark's own job ran next and failed; its error text is escaped in the table.
        wait_for(lambda: stack.mark.job(waiting.id), lambda j: j.status == "failed", "the run")
    finally:
        worker.stop()
        thread.join()
    dana.refresh_button.click()
    assert dana.progress == {} and dana.cancel_buttons == {}
    assert "cancelled" in dana.table.value
    mark.refresh()
    assert EVIL not in mark.table.value and "&lt;script&gt;" in mark.table.value
    for view in (dana, cora, mark):
        view.close()


def test_a_refused_cancel_shows_in_the_widget(stack):
    queued = stack.dana.submit_job("selftest", {"seconds": 0})
    view = jobs_view(stack.dana)
    stack.mark.cancel_job(queued.id)  # someone else got there first
    view.cancel_buttons[queued.id].click()
    assert view.message.kind == "error"
    assert view.message.text == f"cannot cancel job {queued.id}: it already cancelled"
    view.refresh_button.click()
    assert view.cancel_buttons == {} and view.running.children == ()
    view.close()
