// The dashboard: sign-in, the live job table, the job view, the submit form, the summary.

import { ApiError, CLOSE, claims, request, socketUrl, token } from "./client.js";
import { JobView } from "./job-view.js";
import { JobTable } from "./jobs-table.js";
import { renderStats, statsUnavailable } from "./stats.js";
import { SubmitForm } from "./submit-form.js";

const PAGE = 50;
const TOP_PAGE = 100;
const STATS_EVERY_MS = 5000;
const STATS_SOON_MS = 1000;
const TICK_MS = 1000;
const LOOKUP_DELAY_MS = 300;
const RECONNECT_MAX_MS = 15000;
const REFUSED = "Your token was refused (expired or not valid here); sign in again.";

const $ = (selector) => document.querySelector(selector);

class Dashboard {
  constructor() {
    this.filters = { status: "", kind: "" };
    this.cursor = null;
    this.loading = false;
    this.buffered = [];
    this.unknown = new Set();
    this.skipped = new Set();
    this.lookup = null;
    this.generation = 0;
    this.socket = null;
    this.reconnectDelay = 1000;
    this.reconnectTimer = null;
    this.statsTimer = null;
    this.statsSoon = null;
    this.ticker = null;
    this.signedIn = false;

    this.table = new JobTable($("#jobs-body"), {
      onOpen: (id) => this.openJob(id),
      onChange: () => this.showCount(),
    });
    this.view = new JobView($("#job-view"), {
      onJob: (job, event) => {
        if (event) this.table.apply(event);
        else this.table.update(job);
      },
      onClosed: () => {
        if (hashParams().has("job")) history.replaceState(null, "", location.pathname + location.search);
        this.table.focused?.focus();
      },
      onRetried: (job) => {
        if (this.matches(job)) this.table.insert(job);
        this.openJob(job.id);
      },
      onSignedOut: (message) => this.signOut(message),
    });
    this.form = new SubmitForm($("#submit-form"), {
      onSubmitted: (job) => {
        if (this.matches(job)) this.table.insert(job);
        this.refreshStatsSoon();
      },
    });

    $("#signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("#token-input").value.trim();
      if (!value) {
        $("#signin-error").textContent = "Paste a token first.";
        $("#token-input").focus();
        return;
      }
      token.set(value);
      $("#token-input").value = "";
      this.signIn();
    });
    $("#sign-out").addEventListener("click", () => this.signOut(""));
    $("#filters").addEventListener("change", () => {
      this.filters = { status: $("#filter-status").value, kind: $("#filter-kind").value };
      this.reload();
    });
    $("#load-more").addEventListener("click", () => this.loadMore());
    window.addEventListener("hashchange", () => this.followHash());
  }

  start() {
    const params = hashParams();
    const given = params.get("token");
    if (given) {
      token.set(given);
      params.delete("token");
      // The token leaves the address bar (and so the history and any copied link) at once.
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    }
    if (token.get()) this.signIn();
    else this.showSignIn("");
  }

  showSignIn(message) {
    $("#app").hidden = true;
    $("#who").hidden = true;
    $("#signin").hidden = false;
    $("#signin-error").textContent = message;
    $("#token-input").setAttribute("aria-invalid", message ? "true" : "false");
    $("#token-input").focus();
  }

  async signIn() {
    let kinds;
    try {
      kinds = await request("GET", "/kinds");
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        token.clear();
        this.showSignIn(REFUSED);
      } else {
        this.showSignIn(`The API did not answer: ${error.message}`);
      }
      return;
    }
    this.signedIn = true;
    const who = claims(token.get());
    $("#who-name").textContent = `Signed in as ${who.sub ?? "?"}${who.role === "admin" ? " (admin)" : ""}`;
    $("#who").hidden = false;
    $("#signin").hidden = true;
    $("#app").hidden = false;
    this.form.setKinds(kinds);
    const kindFilter = $("#filter-kind");
    kindFilter.replaceChildren(
      new Option("any", ""),
      ...kinds.map((kind) => new Option(kind.kind, kind.kind)),
    );
    this.connect();
    this.reload();
    this.refreshStats();
    this.ticker = setInterval(() => this.table.tick(), TICK_MS);
    this.followHash();
  }

  signOut(message) {
    if (!this.signedIn && !message) {
      this.showSignIn("");
      return;
    }
    this.signedIn = false;
    token.clear();
    this.generation++;
    clearInterval(this.ticker);
    clearTimeout(this.statsTimer);
    clearTimeout(this.statsSoon);
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.lookup);
    this.lookup = null;
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.onclose = null;
      socket.close(1000);
    }
    this.view.close();
    this.table.clear();
    this.filters = { status: "", kind: "" };
    $("#filters").reset();
    $("#stats").replaceChildren();
    $("#flower-link").hidden = true;
    this.showSignIn(message);
  }

  matches(job) {
    return (
      (!this.filters.status || job.status === this.filters.status) &&
      (!this.filters.kind || job.kind === this.filters.kind)
    );
  }

  query(extra) {
    const params = new URLSearchParams(extra);
    if (this.filters.status) params.set("status", this.filters.status);
    if (this.filters.kind) params.set("kind", this.filters.kind);
    return `/jobs?${params}`;
  }

  // --- the table -----------------------------------------------------------------------

  async reload() {
    const generation = ++this.generation;
    this.loading = true;
    this.buffered = [];
    this.skipped.clear();
    this.unknown.clear();
    let page;
    try {
      page = await request("GET", this.query({ limit: PAGE }));
    } catch (error) {
      if (generation === this.generation) {
        this.loading = false;
        this.failed(error);
      }
      return;
    }
    if (generation !== this.generation) return;
    this.loading = false;
    this.table.clear();
    this.table.append(page.items);
    this.setCursor(page.next_cursor);
    // Events that came while the page was read are newer than it, or stale and ignored.
    const waiting = this.buffered;
    this.buffered = [];
    for (const event of waiting) this.event(event);
  }

  async loadMore() {
    if (!this.cursor) return;
    const generation = this.generation;
    const button = $("#load-more");
    button.disabled = true;
    try {
      const page = await request("GET", this.query({ limit: PAGE, cursor: this.cursor }));
      if (generation !== this.generation) return;
      this.table.append(page.items);
      this.setCursor(page.next_cursor);
    } catch (error) {
      this.failed(error);
    } finally {
      button.disabled = false;
    }
  }

  setCursor(cursor) {
    this.cursor = cursor;
    $("#load-more").hidden = !cursor;
    this.showCount();
  }

  showCount() {
    const size = this.table.size;
    $("#jobs-empty").hidden = size > 0 || this.loading;
    $("#jobs-count").textContent = size ? `${size} job${size === 1 ? "" : "s"} shown` : "";
  }

  failed(error) {
    if (error instanceof ApiError && error.status === 401) this.signOut(REFUSED);
    else $("#live").textContent = `error: ${error.message}`;
  }

  // --- live events ---------------------------------------------------------------------

  connect() {
    this.setLive("connecting");
    const socket = new WebSocket(socketUrl("/ws/jobs"));
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.reconnectDelay = 1000;
      this.setLive("live");
    };
    socket.onmessage = (message) => this.event(JSON.parse(message.data));
    socket.onclose = (closing) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (closing.code === CLOSE.UNAUTHORIZED) {
        this.signOut(REFUSED);
        return;
      }
      this.setLive("reconnecting");
      const delay = opened ? 500 : this.reconnectDelay;
      this.reconnectDelay = Math.min(this.reconnectDelay * 2, RECONNECT_MAX_MS);
      this.reconnectTimer = setTimeout(() => {
        // Events may have passed while the stream was down: read the list again.
        this.connect();
        this.reload();
      }, delay);
    };
  }

  setLive(state) {
    const live = $("#live");
    live.dataset.state = state;
    live.textContent = state;
  }

  event(event) {
    if (this.loading) {
      this.buffered.push(event);
      return;
    }
    if (event.type === "status") this.refreshStatsSoon();
    if (this.table.apply(event)) return;
    if (this.filters.status && event.status !== this.filters.status) return;
    if (this.skipped.has(event.job_id)) return;
    // A job this table has not seen (submitted elsewhere): read the newest page for it.
    this.unknown.add(event.job_id);
    if (this.lookup === null) this.lookup = setTimeout(() => this.lookUp(), LOOKUP_DELAY_MS);
  }

  async lookUp() {
    this.lookup = null;
    const wanted = this.unknown;
    this.unknown = new Set();
    const generation = this.generation;
    let page;
    try {
      page = await request("GET", this.query({ limit: TOP_PAGE }));
    } catch (error) {
      this.failed(error);
      return;
    }
    if (generation !== this.generation) return;
    const bottom = this.table.body.lastElementChild;
    const oldest = bottom ? this.table.get(bottom.dataset.id) : null;
    for (const job of page.items) {
      // Older than the rows shown, it belongs to a page not loaded yet.
      const inRange =
        !this.cursor || !oldest || Date.parse(job.created_at) >= Date.parse(oldest.created_at);
      if (this.table.has(job.id)) this.table.update(job);
      else if (inRange) this.table.insert(job);
      wanted.delete(job.id);
    }
    // Not among the newest, or not matching the filters: not for this table.
    for (const id of wanted) this.skipped.add(id);
  }

  // --- the summary ---------------------------------------------------------------------

  async refreshStats() {
    clearTimeout(this.statsTimer);
    try {
      renderStats($("#stats"), $("#flower-link"), await request("GET", "/stats"));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        this.signOut(REFUSED);
        return;
      }
      statsUnavailable($("#stats"), `Summary unavailable: ${error.message}`);
    }
    clearTimeout(this.statsTimer);
    if (this.signedIn) this.statsTimer = setTimeout(() => this.refreshStats(), STATS_EVERY_MS);
  }

  refreshStatsSoon() {
    if (this.statsSoon !== null) return;
    this.statsSoon = setTimeout(() => {
      this.statsSoon = null;
      if (this.signedIn) this.refreshStats();
    }, STATS_SOON_MS);
  }

  // --- the job view --------------------------------------------------------------------

  openJob(id) {
    if (hashParams().get("job") === id) this.view.open(id);
    else location.hash = `job=${encodeURIComponent(id)}`;
  }

  followHash() {
    if (!this.signedIn) return;
    const id = hashParams().get("job");
    if (id) this.view.open(id);
    else this.view.close();
  }
}

function hashParams() {
  return new URLSearchParams(location.hash.replace(/^#/, ""));
}

new Dashboard().start();
