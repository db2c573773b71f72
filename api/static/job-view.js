// One job in full: params, result or error, attempts, times, and its live event timeline
// from /ws/jobs/{id}, with cancel and retry where they apply.

import { ApiError, CLOSE, request, socketUrl } from "./client.js";
import {
  TERMINAL,
  badge,
  json,
  progressBar,
  setBadge,
  setProgress,
  shortId,
  time,
} from "./format.js";
import { merge } from "./jobs-table.js";

const MAX_EVENTS = 500;
const RECONNECT_MS = 1000;

export class JobView {
  constructor(dialog, { onJob, onClosed, onRetried, onSignedOut }) {
    this.dialog = dialog;
    this.onJob = onJob;
    this.onClosed = onClosed;
    this.onRetried = onRetried;
    this.onSignedOut = onSignedOut;
    this.job = null;
    this.seq = 0;
    this.notice = null;
    this.socket = null;
    this.retryTimer = null;
    this.generation = 0;
    this.$ = (selector) => dialog.querySelector(selector);
    this.statusBadge = badge("queued");
    this.bar = progressBar();
    this.bar.setAttribute("aria-label", "progress");
    this.$("#job-progress").append(this.bar);
    this.$("#job-close").addEventListener("click", () => this.close());
    this.$("#job-cancel").addEventListener("click", () => this.act("cancel"));
    this.$("#job-retry").addEventListener("click", () => this.act("retry"));
    dialog.addEventListener("close", () => this.stop());
    // A click on the backdrop (outside the dialog's box) closes it too.
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) {
        const box = dialog.getBoundingClientRect();
        const inside =
          event.clientX >= box.left && event.clientX <= box.right &&
          event.clientY >= box.top && event.clientY <= box.bottom;
        if (!inside) this.close();
      }
    });
  }

  get openId() {
    return this.dialog.open ? this.job?.id ?? this.pendingId : null;
  }

  async open(id) {
    if (this.dialog.open && this.openId === id) return;
    this.stop();
    const generation = ++this.generation;
    this.pendingId = id;
    this.job = null;
    this.seq = 0;
    this.$("#job-title").textContent = `Job ${shortId(id)}`;
    this.$("#job-badge-line").replaceChildren("Loading\u2026");
    this.$("#job-events").replaceChildren();
    this.$("#job-facts").replaceChildren();
    this.$("#job-params").textContent = "";
    this.$("#job-outcome").replaceChildren();
    this.$("#job-action-result").textContent = this.notice ?? "";
    this.notice = null;
    this.$("#job-cancel").hidden = true;
    this.$("#job-retry").hidden = true;
    if (!this.dialog.open) this.dialog.showModal();
    try {
      const job = await request("GET", `/jobs/${encodeURIComponent(id)}`);
      if (generation !== this.generation) return;
      this.job = job;
      this.render();
      this.connect(generation);
    } catch (error) {
      if (generation !== this.generation) return;
      if (error instanceof ApiError && error.status === 401) {
        this.onSignedOut("Your token was refused; sign in again.");
        return;
      }
      const message = error instanceof ApiError && error.status === 404
        ? "No such job, or not yours."
        : `Could not load the job: ${error.message}`;
      this.$("#job-badge-line").replaceChildren(message);
    }
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  stop() {
    this.generation++;
    clearTimeout(this.retryTimer);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.onclose = null;
      socket.close(1000);
    }
    if (!this.dialog.open && this.pendingId) {
      this.pendingId = null;
      this.onClosed();
    }
  }

  connect(generation) {
    const after = this.seq > 0 ? `?after=${this.seq}` : "";
    const socket = new WebSocket(socketUrl(`/ws/jobs/${this.job.id}${after}`));
    this.socket = socket;
    socket.onmessage = (message) => {
      if (generation !== this.generation) return;
      this.event(JSON.parse(message.data));
    };
    socket.onclose = (closing) => {
      if (generation !== this.generation || this.socket !== socket) return;
      this.socket = null;
      if (closing.code === CLOSE.UNAUTHORIZED) {
        this.onSignedOut("Your token was refused; sign in again.");
      } else if (closing.code !== CLOSE.NORMAL && closing.code !== CLOSE.NOT_FOUND) {
        this.retryTimer = setTimeout(() => this.connect(generation), RECONNECT_MS);
      }
    };
  }

  event(event) {
    // A snapshot is the job as stored: it stands even after events it has overtaken.
    const base = event.type === "snapshot" ? 0 : this.seq;
    if (event.seq <= base) return;
    this.job = merge(this.job, base, event);
    this.seq = Math.max(this.seq, event.seq);
    this.timeline(event);
    this.render();
    this.onJob(this.job, event);
    if (TERMINAL.has(event.status) && event.type === "status") this.refresh();
  }

  /** Read the finished job once more, for the times and attempts that events do not carry. */
  async refresh() {
    const generation = this.generation;
    try {
      const job = await request("GET", `/jobs/${this.job.id}`);
      if (generation === this.generation) {
        this.job = job;
        this.render();
        this.onJob(job, null);
      }
    } catch {
      // The events already told the end; the exact times can wait for the next open.
    }
  }

  timeline(event) {
    const list = this.$("#job-events");
    const item = document.createElement("li");
    item.dataset.type = event.type;
    const when = document.createElement("time");
    when.dateTime = event.ts;
    when.textContent = new Date(event.ts).toLocaleTimeString();
    const what = document.createElement("span");
    const percent = event.progress?.percent;
    const parts = [`#${event.seq}`, event.type, event.status];
    if (typeof percent === "number") parts.push(`${Math.floor(percent)}%`);
    if (event.progress?.message) parts.push(event.progress.message);
    if (event.error) parts.push(`${event.error.type}: ${event.error.message}`);
    what.textContent = parts.join(" \u00B7 ");
    item.append(when, " ", what);
    list.append(item);
    while (list.children.length > MAX_EVENTS) list.firstElementChild.remove();
  }

  render() {
    const job = this.job;
    this.$("#job-title").textContent = `${job.kind} job ${shortId(job.id)}`;
    setBadge(this.statusBadge, job.status);
    const line = this.$("#job-badge-line");
    if (!line.contains(this.statusBadge)) line.replaceChildren(this.statusBadge);
    setProgress(this.bar, job);
    const cancelling = job.cancel_requested && !TERMINAL.has(job.status);
    this.$("#job-cancel").hidden = TERMINAL.has(job.status) || cancelling;
    this.$("#job-retry").hidden = !TERMINAL.has(job.status);
    const facts = [
      ["Id", job.id],
      ["Kind", `${job.kind} (${job.lane})`],
      ["Owner", job.owner],
      ["Priority", job.priority],
      ["Attempts", `${job.attempts} of ${job.max_attempts}`],
      ["Created", time(job.created_at)],
      ["Runs at", time(job.run_at)],
      ["Started", time(job.started_at)],
      ["Finished", time(job.finished_at)],
    ];
    if (cancelling) facts.push(["Cancel", "requested; stopping"]);
    this.$("#job-facts").replaceChildren(
      ...facts.flatMap(([term, value]) => {
        const dt = document.createElement("dt");
        dt.textContent = term;
        const dd = document.createElement("dd");
        dd.textContent = value ?? "\u2013";
        return [dt, dd];
      }),
    );
    this.$("#job-params").textContent = json(job.params);
    const outcome = this.$("#job-outcome");
    const parts = [];
    if (job.result) parts.push(section("Result", json(job.result), "json"));
    if (job.error) parts.push(section("Error", `${job.error.type}: ${job.error.message}`, "json error-text"));
    outcome.replaceChildren(...parts);
  }

  async act(action) {
    const job = this.job;
    const note = this.$("#job-action-result");
    note.textContent = action === "cancel" ? "Cancelling\u2026" : "Retrying\u2026";
    try {
      const answer = await request("POST", `/jobs/${job.id}/${action}`);
      if (action === "cancel") {
        note.textContent = answer.status === "cancelled" ? "Cancelled." : "Cancel requested.";
        if (this.job?.id === answer.id) {
          this.job = { ...this.job, cancel_requested: answer.cancel_requested };
          this.render();
        }
      } else {
        note.textContent = `Retried as job ${shortId(answer.id)}.`;
        // The view moves to the new job, and says where it came from.
        this.notice = `A retry of job ${shortId(job.id)}.`;
        this.onRetried(answer);
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        this.onSignedOut("Your token was refused; sign in again.");
        return;
      }
      note.textContent =
        error instanceof ApiError && error.status === 409 ? String(error.detail) : error.message;
    }
  }
}

function section(title, text, className) {
  const wrap = document.createElement("div");
  const heading = document.createElement("h3");
  heading.textContent = title;
  const pre = document.createElement("pre");
  pre.className = className;
  pre.textContent = text;
  wrap.append(heading, pre);
  return wrap;
}
