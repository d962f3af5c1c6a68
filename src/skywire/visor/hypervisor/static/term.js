// The dashboard's terminal: a websocket to a visor's shell (GET /api/visors/<pk>/pty), drawn
// into a <pre>. What it is, honestly: a screen of text lines with a cursor. It understands
// \r, \n, backspace, tab, the cursor moves and erases of CSI (A B C D E F G H f d J K P @ X s u,
// ESC 7 / ESC 8) and so clear-screen (ESC[H ESC[2J); it drops colours and attributes (SGR),
// modes (?…h/l), scroll regions, title strings (OSC) and other escapes. There is no alternate
// screen and no double-width cell: line-oriented shells work, full-screen programs (vi, top,
// less) will not look right. Keys sent: printable characters, Enter, Backspace, Tab, Escape,
// arrows, Home/End/PageUp/PageDown/Insert/Delete, Ctrl-<letter> (Ctrl-C, Ctrl-D…), Alt-<key>,
// and pasted text. The size sent is the panel's, in character cells, on open and on resize.
"use strict";

const TERM_SCROLLBACK = 2000; // lines kept
const TERM_KEYS = {
  Enter: "\r", Backspace: "\x7f", Tab: "\t", Escape: "\x1b",
  ArrowUp: "\x1b[A", ArrowDown: "\x1b[B", ArrowRight: "\x1b[C", ArrowLeft: "\x1b[D",
  Home: "\x1b[H", End: "\x1b[F", Insert: "\x1b[2~", Delete: "\x1b[3~",
  PageUp: "\x1b[5~", PageDown: "\x1b[6~",
};

// The bytes (as text) a terminal sends for a keydown, or null for a key left to the browser.
function termKeyData(event) {
  if (event.metaKey || (event.ctrlKey && event.shiftKey)) return null; // the browser's shortcuts
  const key = event.key;
  if (event.ctrlKey && !event.altKey && key.length === 1) {
    if (key === " " || key === "@") return "\x00";
    const code = key.toUpperCase().charCodeAt(0);
    return code >= 64 && code <= 95 ? String.fromCharCode(code - 64) : null; // Ctrl-C is \x03
  }
  if (Object.hasOwn(TERM_KEYS, key)) return (event.altKey ? "\x1b" : "") + TERM_KEYS[key];
  if ([...key].length === 1 && !event.ctrlKey) return (event.altKey ? "\x1b" : "") + key;
  return null;
}

// The screen: lines of cells (one character each) and a cursor; the last `rows` lines are the
// screen that cursor addressing counts from, the ones above are the scrollback.
class TermScreen {
  constructor(rows, cols) {
    this.rows = rows;
    this.cols = cols;
    this.lines = [[]];
    this.row = 0;
    this.col = 0;
    this.mode = "text"; // text | esc | csi | osc | osc-esc | charset
    this.params = "";
    this.saved = [0, 0];
  }

  resize(rows, cols) {
    this.rows = rows;
    this.cols = cols;
    this.col = Math.min(this.col, cols);
  }

  top() {
    return Math.max(0, this.lines.length - this.rows);
  }

  write(text) {
    let run = [];
    for (const ch of text) {
      if (this.mode !== "text") {
        this.escape(ch);
        continue;
      }
      const code = ch.codePointAt(0);
      if (code >= 0x20 && code !== 0x7f && !(code >= 0x80 && code < 0xa0)) {
        run.push(ch);
        continue;
      }
      if (run.length) this.print(run);
      run = [];
      this.control(ch);
    }
    if (run.length) this.print(run);
  }

  control(ch) {
    switch (ch) {
      case "\r": this.col = 0; break;
      case "\n": case "\v": case "\f": this.lineFeed(); break;
      case "\b": this.col = Math.max(0, Math.min(this.col, this.cols - 1) - 1); break;
      case "\t": this.col = Math.min(this.cols - 1, (Math.floor(this.col / 8) + 1) * 8); break;
      case "\x1b": this.mode = "esc"; break;
      default: break; // BEL and the other controls: nothing to show
    }
  }

  lineFeed() {
    this.row += 1;
    while (this.lines.length <= this.row) this.lines.push([]);
    const extra = this.lines.length - TERM_SCROLLBACK;
    if (extra > 0) {
      this.lines.splice(0, extra);
      this.row -= extra;
    }
  }

  print(chars) {
    let at = 0;
    while (at < chars.length) {
      if (this.col >= this.cols) { // the line is full: wrap
        this.col = 0;
        this.lineFeed();
      }
      const n = Math.min(chars.length - at, this.cols - this.col);
      const line = this.lines[this.row];
      while (line.length < this.col) line.push(" ");
      line.splice(this.col, n, ...chars.slice(at, at + n));
      this.col += n;
      at += n;
    }
  }

  escape(ch) {
    const mode = this.mode;
    this.mode = "text";
    if (mode === "esc") {
      if (ch === "[") { this.mode = "csi"; this.params = ""; }
      else if (ch === "]") this.mode = "osc";
      else if ("()*+".includes(ch)) this.mode = "charset";
      else if (ch === "7") this.save();
      else if (ch === "8") this.restore();
      else if (ch === "c") Object.assign(this, new TermScreen(this.rows, this.cols));
      // keypad modes, index, and the rest: not emulated
    } else if (mode === "csi") {
      const code = ch.codePointAt(0);
      if (code >= 0x40 && code <= 0x7e) this.csi(ch, this.params);
      else if (this.params.length < 64) { this.params += ch; this.mode = "csi"; }
    } else if (mode === "osc") {
      if (ch === "\x1b") this.mode = "osc-esc";
      else if (ch !== "\x07") this.mode = "osc"; // a title string, ended by BEL or ESC \
    }
    // osc-esc (the ESC \ that ends a string) and charset (one designator) end here
  }

  save() {
    this.saved = [this.row - this.top(), this.col];
  }

  restore() {
    this.moveTo(this.saved[0] + 1, this.saved[1] + 1);
  }

  moveTo(row, col) {
    this.row = this.top() + Math.max(1, Math.min(row, this.rows)) - 1;
    while (this.lines.length <= this.row) this.lines.push([]);
    this.col = Math.max(1, Math.min(col, this.cols)) - 1;
  }

  csi(final, raw) {
    if (/^[?>=!<]/.test(raw)) return; // private modes: not emulated
    const nums = raw.split(";").map((p) => parseInt(p, 10));
    const n = (i) => (nums[i] > 0 ? nums[i] : 1);
    const screenRow = this.row - this.top() + 1;
    const line = this.lines[this.row];
    const col = Math.min(this.col, this.cols - 1);
    switch (final) {
      case "A": this.moveTo(screenRow - n(0), col + 1); break;
      case "B": this.moveTo(screenRow + n(0), col + 1); break;
      case "C": this.col = Math.min(this.cols - 1, col + n(0)); break;
      case "D": this.col = Math.max(0, col - n(0)); break;
      case "E": this.moveTo(screenRow + n(0), 1); break;
      case "F": this.moveTo(screenRow - n(0), 1); break;
      case "G": case "`": this.col = Math.min(this.cols, n(0)) - 1; break;
      case "d": this.moveTo(n(0), col + 1); break;
      case "H": case "f": this.moveTo(n(0), n(1)); break;
      case "J": this.eraseDisplay(nums[0] || 0); break;
      case "K": this.eraseLine(nums[0] || 0); break;
      case "P": line.splice(col, n(0)); break;
      case "@":
        line.splice(col, 0, ...Array(n(0)).fill(" "));
        line.length = Math.min(line.length, this.cols);
        break;
      case "X":
        for (let i = col; i < Math.min(line.length, col + n(0)); i++) line[i] = " ";
        break;
      case "s": this.save(); break;
      case "u": this.restore(); break;
      default: break; // m (colours), r (scroll region), n (reports)…: not emulated
    }
  }

  eraseLine(how) {
    const line = this.lines[this.row];
    if (how === 0) line.length = Math.min(line.length, this.col);
    else if (how === 1) for (let i = 0; i <= Math.min(this.col, line.length - 1); i++) line[i] = " ";
    else line.length = 0;
  }

  eraseDisplay(how) {
    const top = this.top();
    if (how === 0) {
      this.eraseLine(0);
      for (let i = this.row + 1; i < this.lines.length; i++) this.lines[i] = [];
    } else if (how === 1) {
      for (let i = top; i < this.row; i++) this.lines[i] = [];
      this.eraseLine(1);
    } else if (how === 2) {
      for (let i = top; i < this.lines.length; i++) this.lines[i] = [];
    } else if (how === 3) { // the scrollback
      this.lines.splice(0, top);
      this.row -= top;
    }
  }

  // Into `pre`: the text, the cursor's cell as <span class="cursor">; blank lines below the
  // cursor are left out.
  render(pre) {
    let last = this.lines.length - 1;
    while (last > this.row && this.lines[last].length === 0) last--;
    const text = (from, to) => this.lines.slice(from, to).map((l) => l.join("")).join("\n");
    const line = this.lines[this.row];
    const col = Math.min(this.col, this.cols - 1);
    const head = line.slice(0, col).join("").padEnd(col, " ");
    const cursor = document.createElement("span");
    cursor.className = "cursor";
    cursor.textContent = line[col] || " ";
    let tail = line.slice(col + 1).join("");
    if (last > this.row) tail += "\n" + text(this.row + 1, last + 1);
    pre.replaceChildren((this.row ? text(0, this.row) + "\n" : "") + head, cursor, tail);
  }
}

// The panel: one shell at a time, on the visor it was opened for. `onstate(state)` hears
// "connecting", "open" and "closed"; the pre's data-state says the same.
class TermPanel {
  constructor(pre, status, onstate) {
    this.pre = pre;
    this.status = status;
    this.onstate = onstate || (() => {});
    this.ws = null;
    this.pk = null;
    this.screen = null;
    this.sent = null; // the size the shell was last told
    this.encoder = new TextEncoder();
    this.decoder = null;
    this.probe = document.createElement("span");
    this.probe.className = "term-probe";
    this.probe.setAttribute("aria-hidden", "true");
    this.probe.textContent = "MMMMMMMMMM";
    pre.after(this.probe);
    pre.addEventListener("keydown", (event) => {
      const data = termKeyData(event);
      if (data === null) return;
      event.preventDefault();
      this.send(data);
    });
    pre.addEventListener("paste", (event) => {
      event.preventDefault();
      this.send(event.clipboardData.getData("text").replace(/\r?\n/g, "\r"));
    });
    new ResizeObserver(() => this.fit()).observe(pre);
  }

  // The panel's size in character cells.
  size() {
    const cell = this.probe.getBoundingClientRect();
    const style = getComputedStyle(this.pre);
    const pad = (a, b) => parseFloat(style[a]) + parseFloat(style[b]);
    const width = this.pre.clientWidth - pad("paddingLeft", "paddingRight");
    const height = this.pre.clientHeight - pad("paddingTop", "paddingBottom");
    const cols = Math.floor(width / (cell.width / 10 || 8));
    const rows = Math.floor(height / (cell.height || 16));
    return {rows: Math.max(4, Math.min(rows, 500)), cols: Math.max(20, Math.min(cols, 1000))};
  }

  setState(state, message) {
    this.pre.dataset.state = state;
    this.status.textContent = message;
    this.onstate(state);
  }

  connect(pk, token, label) {
    this.close("");
    this.pk = pk;
    this.pre.hidden = false;
    const {rows, cols} = this.size();
    this.screen = new TermScreen(rows, cols);
    this.decoder = new TextDecoder("utf-8");
    Object.assign(this.pre.dataset, {pk, rows: String(rows), cols: String(cols)});
    this.draw();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({csrf: token, rows: String(rows), cols: String(cols)});
    const ws = new WebSocket(`${scheme}//${location.host}/api/visors/${pk}/pty?${query}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.setState("connecting", `connecting to ${label}…`);
    this.sent = {rows, cols};
    ws.onopen = () => {
      if (this.ws === ws) this.setState("connecting", `starting a shell on ${label}…`);
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      if (typeof event.data === "string") { // {"type": "started"}: the shell runs
        if (JSON.parse(event.data).type !== "started") return;
        this.setState("open", `shell on ${label}`);
        this.fit(); // the panel may have changed while connecting
        this.pre.focus();
        return;
      }
      this.screen.write(this.decoder.decode(event.data, {stream: true}));
      this.draw();
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const why = event.reason || (event.code === 1006 ? "the connection failed" : `code ${event.code}`);
      this.setState("closed", `closed: ${why}`);
    };
  }

  close(why) {
    const ws = this.ws;
    if (ws === null) return;
    this.ws = null;
    ws.close(1000);
    this.setState("closed", why ? `closed: ${why}` : "closed");
  }

  send(text) {
    if (this.ws !== null && this.ws.readyState === WebSocket.OPEN) this.ws.send(this.encoder.encode(text));
  }

  fit() {
    if (this.screen === null || this.pre.hidden) return;
    const {rows, cols} = this.size();
    if (rows !== this.screen.rows || cols !== this.screen.cols) {
      this.screen.resize(rows, cols);
      Object.assign(this.pre.dataset, {rows: String(rows), cols: String(cols)});
      this.draw();
    }
    const open = this.ws !== null && this.pre.dataset.state === "open";
    if (open && (rows !== this.sent.rows || cols !== this.sent.cols)) {
      this.sent = {rows, cols};
      this.ws.send(JSON.stringify({type: "resize", rows, cols}));
    }
  }

  draw() {
    this.screen.render(this.pre);
    this.pre.scrollTop = this.pre.scrollHeight;
  }
}
