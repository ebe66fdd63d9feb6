// REST client and the signed-in session. Tokens live in sessionStorage (this tab only); the access
// token is refreshed a minute before it expires, and once more on a 401 before giving up.

const STORAGE_KEY = "shardline.session";
const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error || "error";
    this.detail = body?.detail || [];
  }
}

export class Session extends EventTarget {
  constructor() {
    super();
    this.tokens = null;
    this._refreshTimer = null;
    this._refreshing = null;
    try {
      this.tokens = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
    } catch {
      this.tokens = null;
    }
    if (this.tokens && this.tokens.refresh_expires_at * 1000 <= Date.now()) this.tokens = null;
    if (this.tokens) this._schedule();
  }

  get user() { return this.tokens?.user ?? null; }
  get accessToken() { return this.tokens?.access_token ?? null; }
  can(permission) { return Boolean(this.user?.permissions.includes(permission)); }

  async login(username, password) {
    const body = await this._fetch("POST", "/auth/login", { username, password }, false);
    this._store(body);
    return body.user;
  }

  logout() {
    this.tokens = null;
    sessionStorage.removeItem(STORAGE_KEY);
    clearTimeout(this._refreshTimer);
    this.dispatchEvent(new Event("change"));
  }

  refresh() {
    if (!this.tokens) return Promise.reject(new ApiError(401, { message: "not signed in" }));
    this._refreshing ??= this._fetch("POST", "/auth/refresh", { refresh_token: this.tokens.refresh_token }, false)
      .then((body) => this._store(body))
      .catch((err) => {
        if (err.status === 401) this.logout();
        throw err;
      })
      .finally(() => { this._refreshing = null; });
    return this._refreshing;
  }

  get(path) { return this.request("GET", path); }
  post(path, body) { return this.request("POST", path, body ?? {}); }
  patch(path, body) { return this.request("PATCH", path, body); }
  delete(path) { return this.request("DELETE", path); }

  async request(method, path, body) {
    try {
      return await this._fetch(method, path, body, true);
    } catch (err) {
      if (err.status !== 401 || !this.tokens) throw err;
      await this.refresh();
      return this._fetch(method, path, body, true);
    }
  }

  async _fetch(method, path, body, authorised) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (authorised && this.accessToken) headers.Authorization = `Bearer ${this.accessToken}`;
    let response;
    try {
      response = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(0, { error: "network", message: "the terminal server cannot be reached" });
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  _store(body) {
    this.tokens = body;
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(body));
    this._schedule();
    this.dispatchEvent(new Event("change"));
  }

  _schedule() {
    clearTimeout(this._refreshTimer);
    const due = this.tokens.expires_at * 1000 - Date.now() - 60_000;
    this._refreshTimer = setTimeout(() => this.refresh().catch(() => {}), Math.max(due, 1_000));
  }
}
