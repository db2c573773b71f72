// The live table of jobs: one row per job, updated in place by id.
//
// Events only mark rows dirty; one animation frame redraws the dirty rows, so a burst of
// events costs one layout however many there are. Only rows on (or near) the screen are
// redrawn: each changed row costs the browser layout work, and a thousand of them would not
// fit in a frame. A row that scrolls into view is brought up to date first.

import {
  TERMINAL,
  badge,
  progressBar,
  seconds,
  setBadge,
  setProgress,
  shortId,
  timings,
} from "./format.js";

export class JobTable {
  constructor(body, { onOpen, onChange }) {
    this.body = body;
    this.onOpen = onOpen;
    this.onChange = onChange;
    this.rows = new Map();
    this.dirty = new Set();
    this.frame = null;
    this.focused = null;
    this.visible = new Set();
    this.observer = new IntersectionObserver((entries) => this.seen(entries), {
      rootMargin: "400px 0px",
    });
    body.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-id]");
      if (row) this.onOpen(row.dataset.id);
    });
    body.addEventListener("keydown", (event) => this.key(event));
    body.addEventListener("focusin", (event) => {
      const row = event.target.closest("tr[data-id]");
      if (row) this.rove(row);
    });
  }

  get size() {
    return this.rows.size;
  }

  has(id) {
    return this.rows.has(id);
  }

  get(id) {
    return this.rows.get(id)?.job;
  }

  clear() {
    this.observer.disconnect();
    this.visible.clear();
    this.rows.clear();
    this.dirty.clear();
    this.focused = null;
    this.body.replaceChildren();
    this.onChange();
  }

  /** Older jobs, from the next page: added at the bottom in the order given. */
  append(jobs) {
    const fragment = document.createDocumentFragment();
    for (const job of jobs) {
      if (this.rows.has(job.id)) {
        this.update(job);
        continue;
      }
      fragment.append(this.add(job).tr);
    }
    this.body.append(fragment);
    this.settle();
  }

  /** A job that may be new: in place if shown, else where its creation time puts it. */
  insert(job) {
    if (this.rows.has(job.id)) {
      this.update(job);
      return;
    }
    const row = this.add(job);
    let before = this.body.firstElementChild;
    while (before && newer(this.rows.get(before.dataset.id).job, job)) {
      before = before.nextElementSibling;
    }
    this.body.insertBefore(row.tr, before);
    this.settle();
  }

  /** A newer copy of a job from the API (no seq: a read, not an event). */
  update(job) {
    const row = this.rows.get(job.id);
    if (!row || (TERMINAL.has(row.job.status) && !TERMINAL.has(job.status))) return;
    row.job = { ...row.job, ...job };
    this.mark(job.id);
  }

  /** A live event. False when the job is not in the table. */
  apply(event) {
    const row = this.rows.get(event.job_id);
    if (!row) return false;
    row.job = merge(row.job, row.seq, event);
    row.seq = Math.max(row.seq, event.seq);
    this.mark(event.job_id);
    return true;
  }

  /** Ages and durations move with the clock. */
  tick() {
    for (const id of this.visible) this.dirty.add(id);
    this.schedule();
  }

  seen(entries) {
    for (const entry of entries) {
      const id = entry.target.dataset.id;
      if (entry.isIntersecting) {
        this.visible.add(id);
        this.dirty.add(id);
      } else {
        this.visible.delete(id);
      }
    }
    this.schedule();
  }

  mark(id) {
    this.dirty.add(id);
    this.schedule();
  }

  schedule() {
    if (this.frame === null) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = null;
    const now = Date.now();
    for (const id of this.dirty) {
      const row = this.rows.get(id);
      if (row && this.visible.has(id)) render(row, now);
    }
    this.dirty.clear();
  }

  add(job) {
    const tr = document.createElement("tr");
    tr.dataset.id = job.id;
    tr.tabIndex = this.rows.size === 0 ? 0 : -1;
    tr.setAttribute("aria-label", `${job.kind} job ${shortId(job.id)}`);
    const cell = (className) => {
      const td = document.createElement("td");
      if (className) td.className = className;
      tr.append(td);
      return td;
    };
    const status = badge(job.status);
    cell("col-status").append(status);
    cell("col-kind").textContent = job.kind;
    const code = document.createElement("code");
    code.textContent = shortId(job.id);
    code.title = job.id;
    cell("col-id").append(code);
    const bar = progressBar();
    bar.setAttribute("aria-label", `progress of job ${shortId(job.id)}`);
    cell("col-progress").append(bar);
    const age = cell("col-age");
    const duration = cell("col-duration");
    const row = { job, seq: 0, tr, status, bar, age, duration, shown: {} };
    this.rows.set(job.id, row);
    render(row, Date.now());
    this.observer.observe(tr);
    if (this.focused === null) this.focused = tr;
    return row;
  }

  settle() {
    this.onChange();
  }

  rove(row) {
    if (this.focused && this.focused !== row) this.focused.tabIndex = -1;
    row.tabIndex = 0;
    this.focused = row;
  }

  key(event) {
    const row = event.target.closest("tr[data-id]");
    if (!row) return;
    let next = null;
    switch (event.key) {
      case "Enter":
      case " ":
        event.preventDefault();
        this.onOpen(row.dataset.id);
        return;
      case "ArrowDown":
        next = row.nextElementSibling;
        break;
      case "ArrowUp":
        next = row.previousElementSibling;
        break;
      case "Home":
        next = this.body.firstElementChild;
        break;
      case "End":
        next = this.body.lastElementChild;
        break;
      default:
        return;
    }
    event.preventDefault();
    if (next) {
      this.rove(next);
      next.focus();
    }
  }
}

/** Whether `a` comes before `b`: the API's order, newest first by (created_at, id). */
function newer(a, b) {
  const at = Date.parse(a.created_at);
  const bt = Date.parse(b.created_at);
  return at !== bt ? at > bt : a.id > b.id;
}

/** A job moved on by an event; stale events (a lower seq, a way out of an end) change nothing. */
export function merge(job, seq, event) {
  if (event.seq <= seq || (TERMINAL.has(job.status) && !TERMINAL.has(event.status))) return job;
  const next = { ...job, status: event.status };
  if (event.progress !== undefined) next.progress = event.progress ?? job.progress;
  if (event.result !== undefined) next.result = event.result;
  if (event.error !== undefined) next.error = event.error;
  // Events carry no timestamps but their own: close enough until the job is read again.
  if (event.status === "running" && !job.started_at) next.started_at = event.ts;
  if (TERMINAL.has(event.status) && !job.finished_at) next.finished_at = event.ts;
  return next;
}

function render(row, now) {
  const { job, shown } = row;
  if (shown.status !== job.status) {
    shown.status = job.status;
    setBadge(row.status, job.status);
    row.tr.dataset.status = job.status;
  }
  setProgress(row.bar, job);
  const { age, duration } = timings(job, now);
  const ageText = seconds(age);
  if (shown.age !== ageText) {
    shown.age = ageText;
    row.age.textContent = ageText;
  }
  const durationText = seconds(duration);
  if (shown.duration !== durationText) {
    shown.duration = durationText;
    row.duration.textContent = durationText;
  }
}
