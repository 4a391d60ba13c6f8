import Foundation
import StepFlow

/// The pages `serve` sends: self-contained HTML with a small script that polls the run's `state`
/// (only the steps changed since the generation it last saw) once a second. Run data reaches the
/// page only as JSON and is shown with `textContent`, never parsed as HTML; the timeline is the
/// report's, made and escaped by the server.
enum LivePage {
    static func runPage(number: Int, name: String, directory: String, runCount: Int) -> String {
        let e = escape
        let back = runCount > 1 ? "<a href=\"/\">all runs</a> · " : ""
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <title>\(e(name)) — stepflow serve</title>
        <style>\(HTMLReport.styleSheet)\(style)</style>
        </head><body data-base="/runs/\(number)/">
        <header><h1><span id="protocol">\(e(name))</span> <span id="status" class="badge">…</span></h1>
        <p class="sub">\(back)<span id="directory">\(e(directory))</span> · <span id="owner"></span> · <a href="/runs/\(number)/report">report</a> · live, every second · <span id="updated"></span></p></header>
        <section id="summary"><h2>Progress</h2>
        <div class="bar"><div id="bar-finished"></div><div id="bar-failed"></div></div>
        <p class="figures"><b><span id="finished">0</span></b> of <span id="total">0</span> finished · <span id="percent">0%</span> · <span id="rate">—</span> · <span id="left"></span></p>
        <ul class="counts" id="counts"></ul>
        <div id="launches"></div>
        <p id="problem" class="problem" hidden></p>
        </section>
        <div id="timeline-box"><section id="timeline"><h2>Timeline</h2><p>Loading…</p></section></div>
        <section id="steps"><h2>Steps</h2>
        <p class="controls"><input id="filter" type="search" placeholder="filter by name, function or id" size="32"/>
        <select id="status-filter"><option value="">every status</option></select>
        <span id="shown"></span></p>
        <p id="partial" class="sub" hidden>This run changes more steps a second than the page follows: the table gets at most \(HTMLText.count(LiveState.stepLimit)) changed steps a second, the lowest ids first. The counts, the progress and the timeline cover every step.</p>
        <div class="split"><table id="step-table"><thead><tr>
        <th data-key="id">id</th><th data-key="name">name</th><th data-key="status">status</th><th data-key="place">rank/slot</th>
        <th data-key="duration">duration</th><th data-key="attempts">attempts</th><th data-key="error">error</th>
        </tr></thead><tbody></tbody></table>
        <aside id="log-panel" hidden><h3 id="log-title"></h3><p id="log-path" class="sub"></p><pre id="log-lines"></pre></aside></div>
        </section>
        <script>\(script)</script>
        </body></html>
        """
    }

    static func listPage(_ runs: [(RunCatalog.Run, RunView?)]) -> String {
        let e = escape
        var rows = ""
        for (run, view) in runs {
            let status = view?.status ?? "no database yet"
            let progress = view.map { "\(HTMLText.count($0.count(.finished)))/\(HTMLText.count($0.total)) finished, \($0.count(.failed)) failed" } ?? "—"
            rows += "<tr><td><a href=\"/runs/\(run.number)/\">\(e(run.name))</a></td><td class=\"status\" data-run=\"\(run.number)\">\(e(status))</td>"
                + "<td class=\"progress\" data-run=\"\(run.number)\">\(e(progress))</td><td>\(e(run.directory.path))</td></tr>\n"
        }
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"/><title>stepflow serve — runs</title>
        <style>\(HTMLReport.styleSheet)\(style)</style></head><body>
        <header><h1>Runs</h1><p class="sub">live, every 2 seconds · <a href="/metrics">metrics</a></p></header>
        <section><table id="runs"><thead><tr><th>run</th><th>status</th><th>progress</th><th>directory</th></tr></thead><tbody>
        \(rows)</tbody></table></section>
        <script>
        async function refresh() {
          try {
            const runs = await (await fetch('/api/runs')).json();
            for (const r of runs) {
              const s = r.summary;
              const status = document.querySelector('td.status[data-run="' + r.number + '"]');
              const progress = document.querySelector('td.progress[data-run="' + r.number + '"]');
              if (!status || !progress) { location.reload(); return; }
              status.textContent = s ? s.status : (r.problem || 'no database yet');
              progress.textContent = s ? (s.counts.finished + '/' + s.total + ' finished, ' + s.counts.failed + ' failed') : '—';
            }
          } catch (e) {}
          setTimeout(refresh, 2000);
        }
        setTimeout(refresh, 2000);
        </script></body></html>
        """
    }

    static func escape(_ s: String) -> String { HTMLText.escape(s) }

    static let style = """
    .bar { display: flex; height: 14px; background: #e8e8e8; border-radius: 3px; overflow: hidden; max-width: 900px; }
    #bar-finished { background: #2e7d32; width: 0; } #bar-failed { background: #c62828; width: 0; }
    .figures { font-size: 1.1em; } .problem { color: #c62828; }
    .controls input, .controls select { font: inherit; padding: 2px 4px; }
    .split { display: flex; gap: 16px; align-items: flex-start; }
    #step-table { border-collapse: collapse; font-size: 0.9em; }
    #step-table th { cursor: pointer; text-align: left; border-bottom: 1px solid #999; padding: 2px 8px; user-select: none; }
    #step-table td { padding: 1px 8px; border-bottom: 1px solid #eee; max-width: 420px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
    #step-table tbody tr { cursor: pointer; } #step-table tbody tr:hover { background: #f2f6fc; }
    #step-table tr.selected { background: #dde8f8; }
    #log-panel { flex: 1; min-width: 320px; max-width: 50%; }
    #log-lines { background: #111; color: #ddd; padding: 8px; max-height: 560px; overflow: auto; font-size: 0.85em; white-space: pre-wrap; }
    td.s-failed { color: #c62828; font-weight: bold; } td.s-running { color: #1565c0; } td.s-finished { color: #2e7d32; }
    """

    /// The run page's script: polls `state?since=<generation>` every second and keeps every step it
    /// was sent; redraws the table only when something changed.
    static let script = """
    'use strict';
    const base = document.body.dataset.base;
    const steps = new Map();
    const statuses = ['new', 'waiting', 'running', 'finished', 'failed', 'skipped', 'aborted'];
    let generation = null, sortKey = 'id', sortUp = true, selected = null, tableDirty = true;
    const $ = (id) => document.getElementById(id);
    for (const s of statuses) { const o = document.createElement('option'); o.value = s; o.textContent = s; $('status-filter').appendChild(o); }
    function duration(s) {
      if (s == null || !isFinite(s)) return '';
      if (s < 1) return (s * 1000).toFixed(1) + ' ms';
      if (s < 60) return s.toFixed(2) + ' s';
      if (s < 3600) return Math.floor(s / 60) + ' min ' + String(Math.floor(s % 60)).padStart(2, '0') + ' s';
      return Math.floor(s / 3600) + ' h ' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + ' min';
    }
    function stepDuration(st, now) {
      if (st.start == null) return null;
      return (st.end != null ? st.end : (st.status === 'running' ? now : st.start)) - st.start;
    }
    let lastRun = null;
    function drawSummary(run) {
      lastRun = run;
      $('protocol').textContent = run.protocol;
      $('status').textContent = run.status;
      $('status').className = 'badge ' + run.status;
      $('owner').textContent = run.owner ? ('owned by ' + run.owner) : (run.live ? 'live' : 'not running');
      $('finished').textContent = run.counts.finished.toLocaleString('en');
      $('total').textContent = run.total.toLocaleString('en');
      const pf = run.total ? run.counts.finished / run.total * 100 : 0;
      const pe = run.total ? (run.counts.failed + run.counts.skipped) / run.total * 100 : 0;
      $('percent').textContent = pf.toFixed(1) + '%';
      $('bar-finished').style.width = pf + '%';
      $('bar-failed').style.width = pe + '%';
      $('rate').textContent = run.stepsPerSecond == null ? 'rate not known yet' : (run.stepsPerSecond >= 100 ? run.stepsPerSecond.toFixed(0) : run.stepsPerSecond.toFixed(2)) + ' steps/s';
      $('left').textContent = run.secondsLeft == null ? '' : '~' + duration(run.secondsLeft) + ' left';
      $('updated').textContent = 'read ' + new Date(run.takenAt * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
      const counts = $('counts');
      counts.textContent = '';
      for (const s of statuses) {
        const li = document.createElement('li');
        li.className = 'count ' + s + (run.counts[s] ? '' : ' zero');
        li.id = 'count-' + s;
        const n = document.createElement('span'); n.className = 'n'; n.textContent = run.counts[s].toLocaleString('en');
        li.appendChild(n); li.appendChild(document.createTextNode(' ' + s));
        counts.appendChild(li);
      }
      const launches = $('launches');
      launches.textContent = '';
      if (run.launches.length > 1 || run.launches.some((l) => l.lostRanks.length || l.ending == null)) {
        const t = document.createElement('table');
        t.className = 'launches';
        for (const l of run.launches) {
          const tr = document.createElement('tr');
          for (const v of ['launch ' + l.number, l.mpi + ' ranks × ' + l.threads + ' threads', l.hosts || '', l.text]) {
            const td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
          }
          t.appendChild(tr);
        }
        launches.appendChild(t);
      }
    }
    function key(st, k, now) {
      switch (k) {
        case 'place': return st.rank == null ? -1 : st.rank * 100000 + (st.slot || 0);
        case 'duration': { const d = stepDuration(st, now); return d == null ? -1 : d; }
        case 'error': return st.error || '';
        default: return st[k] == null ? '' : st[k];
      }
    }
    function drawTable() {
      const now = Date.now() / 1000;
      const text = $('filter').value.trim().toLowerCase();
      const status = $('status-filter').value;
      let rows = [];
      for (const st of steps.values()) {
        if (status && st.status !== status) continue;
        if (text && !(String(st.id) === text || st.name.toLowerCase().includes(text) || st.function.toLowerCase().includes(text))) continue;
        rows.push(st);
      }
      rows.sort((a, b) => { const x = key(a, sortKey, now), y = key(b, sortKey, now); return (x < y ? -1 : x > y ? 1 : a.id - b.id) * (sortUp ? 1 : -1); });
      const limit = 500;
      $('shown').textContent = rows.length > limit ? ('the first ' + limit + ' of ' + rows.length.toLocaleString('en') + ' steps') : (rows.length.toLocaleString('en') + ' steps');
      const body = document.createElement('tbody');
      for (const st of rows.slice(0, limit)) {
        const tr = document.createElement('tr');
        tr.dataset.step = st.id;
        if (st.id === selected) tr.className = 'selected';
        const cells = [st.id, st.name, st.status, st.rank == null ? '' : st.rank + '/' + (st.slot == null ? '-' : st.slot), duration(stepDuration(st, now)), st.attempts, st.error || ''];
        cells.forEach((v, i) => { const td = document.createElement('td'); td.textContent = v; if (i === 2) td.className = 's-' + st.status; if (i === 6) td.title = v; tr.appendChild(td); });
        body.appendChild(tr);
      }
      $('step-table').replaceChild(body, $('step-table').tBodies[0]);
      tableDirty = false;
    }
    async function showLog(id) {
      selected = id;
      tableDirty = true;
      const panel = $('log-panel');
      panel.hidden = false;
      const st = steps.get(id);
      $('log-title').textContent = 'Step ' + id + (st ? ' ' + st.name + ' (' + st.status + ')' : '');
      try {
        const log = await (await fetch(base + 'log/' + id)).json();
        $('log-path').textContent = log.path || '';
        $('log-lines').textContent = log.problem ? log.problem : ((log.omitted ? '… (earlier lines not shown)\\n' : '') + log.lines.join('\\n'));
      } catch (e) {
        $('log-lines').textContent = 'could not read the log: ' + e;
      }
      drawTable();
    }
    $('step-table').addEventListener('click', (ev) => {
      const th = ev.target.closest('th');
      if (th) { const k = th.dataset.key; if (sortKey === k) sortUp = !sortUp; else { sortKey = k; sortUp = true; } drawTable(); return; }
      const tr = ev.target.closest('tr[data-step]');
      if (tr) showLog(Number(tr.dataset.step));
    });
    $('filter').addEventListener('input', drawTable);
    $('status-filter').addEventListener('change', drawTable);
    async function poll() {
      try {
        const r = await fetch(base + 'state' + (generation === null ? '' : '?since=' + generation));
        const s = await r.json();
        if (s.problem) {
          $('problem').hidden = false; $('problem').textContent = s.problem;
        } else {
          $('problem').hidden = true;
          if (s.full) steps.clear();
          for (const id of s.removed) steps.delete(id);
          for (const st of s.steps) steps.set(st.id, st);
          $('partial').hidden = !s.partial;
          if (s.full || s.steps.length || s.removed.length || steps.size && [...steps.values()].some((x) => x.status === 'running')) tableDirty = true;
          generation = s.generation;
          drawSummary(s.run);
          if (tableDirty) drawTable();
        }
      } catch (e) {
        $('problem').hidden = false; $('problem').textContent = 'cannot reach the server: ' + e;
      }
      setTimeout(poll, 1000);
    }
    async function timeline() {
      try {
        const html = await (await fetch(base + 'timeline')).text();
        // The server's own HTML: the report's timeline, every name in it escaped.
        $('timeline-box').innerHTML = html;
      } catch (e) {}
      setTimeout(timeline, lastRun && !lastRun.live ? 60000 : 5000);
    }
    poll();
    timeline();
    """
}
