// The synchronization section of the Microsoft 365 page: Update now with
// live progress, dry-run preview, the last run's report and the run
// history. It shows itself only when the sync API answers
// (GET /api/v1/sync/runs), so the page works before that API exists.
(function () {
  'use strict';
  const SB = window.SB;
  const $ = (id) => document.getElementById(id);
  const card = $('sync-card');
  let available = false;
  let polling = null;

  const PHASES = { reading: 'Reading the directory', planning: 'Planning changes', applying: 'Applying changes', mailing: 'Sending welcome emails', done: 'Done' };

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function fmt(s) { const d = new Date(s); return isNaN(d) ? '' : d.toLocaleString(); }
  const STATES = { running: 'Running', succeeded: 'Succeeded', failed: 'Failed', needs_confirmation: 'Needs confirmation', dry_run: 'Preview', confirmed: 'Confirmed' };
  function stateLabel(s) { return STATES[s] || s || ''; }
  function skippedCount(r) { return r.skippedTotal || (r.skipped || []).length; }

  function renderRuns(runs) {
    const tb = $('runs-table').tBodies[0];
    if (!runs.length) return;
    tb.replaceChildren(...runs.map((r) => {
      const tr = document.createElement('tr');
      tr.append(el('td', fmt(r.startedAt), 'nowrap'), el('td', (r.dryRun ? 'dry run · ' : '') + (r.trigger || '')), el('td', stateLabel(r.state), 'state-' + r.state),
        el('td', String(r.created || 0), 'num'), el('td', String(r.updated || 0), 'num'), el('td', String(r.deleted || 0), 'num'),
        el('td', String(skippedCount(r)), 'num'));
      const td = el('td', undefined, 'actions');
      const b = el('button', 'Report', 'btn btn-small');
      b.type = 'button';
      b.addEventListener('click', () => openRun(r.id));
      td.append(b);
      tr.append(td);
      return tr;
    }));
  }

  function renderReport(r) {
    const box = $('run-report');
    box.hidden = false;
    const head = el('h3', (r.dryRun ? 'Dry-run preview' : 'Run report') + ' · ' + fmt(r.startedAt) + ' · ' + stateLabel(r.state));
    const stats = el('div', undefined, 'stats');
    for (const [k, label] of [['created', 'Created'], ['updated', 'Updated'], ['deleted', 'Deleted'], ['unchanged', 'Unchanged'], ['bound', 'Associated']]) {
      const s = el('div', undefined, 'stat');
      s.append(el('b', String(r[k] || 0)), el('span', r.dryRun ? 'would be ' + label.toLowerCase() : label));
      stats.append(s);
    }
    const sk = el('div', undefined, 'stat');
    sk.append(el('b', String(skippedCount(r))), el('span', 'Skipped'));
    stats.append(sk);
    for (const [k, label] of [['groupsCreated', 'Groups created'], ['groupsUpdated', 'Groups updated'], ['groupsDeleted', 'Groups deleted']]) {
      if (!r[k]) continue;
      const s = el('div', undefined, 'stat');
      s.append(el('b', String(r[k])), el('span', r.dryRun ? 'would be ' + label.toLowerCase() : label));
      stats.append(s);
    }
    const parts = [head, stats];
    if (r.error) parts.push(errorBox(r));
    // The deletion guard: what waits, extensions and extension groups.
    const pending = [];
    if (r.pendingDeletes) pending.push(r.pendingDeletes + ' synced extension' + (r.pendingDeletes === 1 ? '' : 's'));
    if (r.pendingGroupDeletes) pending.push(r.pendingGroupDeletes + ' synced extension group' + (r.pendingGroupDeletes === 1 ? '' : 's'));
    if (r.state === 'needs_confirmation') {
      const warn = el('div', undefined, 'alert alert-warn');
      warn.id = 'guard-box';
      warn.append(el('p', 'The deletion guard stopped this run: it would delete ' + (pending.join(' and ') || 'more than the guard allows') +
        ', more than the guard allows, so nothing was deleted. Check the planned changes below, then confirm to apply them.'));
      const b = el('button', 'Confirm and delete', 'btn btn-danger');
      b.type = 'button';
      b.id = 'confirm-run';
      b.addEventListener('click', async () => {
        if (!(await SB.confirm('Delete ' + (pending.join(' and ') || 'them') + ' now? This cannot be undone.', 'Delete'))) return;
        b.disabled = true;
        const c = await SB.api('POST', '/api/v1/sync/runs/' + encodeURIComponent(r.id) + '/confirm');
        if (!c.ok) { b.disabled = false; SB.toast(SB.errorOf(c).message, true); return; }
        SB.toast('Confirmed: the run applies the deletions');
        if (c.data.state === 'running') watch(c.data.id); else { renderReport(c.data); loadRuns(); }
      });
      warn.append(b);
      parts.push(warn);
    } else if (pending.length) {
      parts.push(el('p', (r.dryRun ? 'A real run would stop for confirmation: it deletes ' : 'Waiting for confirmation: ') + pending.join(' and ') + ' (deletion guard).', 'alert alert-warn'));
    }
    if (r.state === 'confirmed') parts.push(el('p', 'Confirmed' + (r.confirmedBy ? ' by ' + r.confirmedBy : '') + ': a later run applied these changes.', 'alert alert-info'));
    if (r.notes && r.notes.length) { const ul = el('ul', undefined, 'notes'); r.notes.forEach((n) => ul.append(el('li', n))); parts.push(ul); }
    if (r.plan && r.plan.length) {
      parts.push(el('h3', r.dryRun ? 'Planned changes' : 'Changes'));
      parts.push(table(['Action', 'User or group', 'Extension', 'Detail'], r.plan.map((a) => [a.op || '', a.subject || a.entraId || '', a.number || '', a.reason || (a.changes || []).join(', ')]), 'plan-table'));
      if (r.planTotal > r.plan.length) parts.push(el('p', 'Showing ' + r.plan.length + ' of ' + r.planTotal + ' planned changes.', 'muted'));
    } else if (r.dryRun && r.state !== 'running') {
      parts.push(el('p', 'Nothing to change: the PBX is in step with Microsoft Entra ID.', 'muted'));
    }
    if (r.skipped && r.skipped.length) {
      parts.push(el('h3', 'Skipped'));
      parts.push(table(['User', 'Reason'], r.skipped.map((s) => [s.subject || '', s.reason || '']), 'skipped-table'));
    }
    box.replaceChildren(...parts);
  }

  // errorBox says what failed and what to do about it.
  const ERROR_HELP = {
    read_failed: 'Check the connection on the status above; the next run tries again.',
    apply_failed: 'What was applied stays; the next run completes the rest.',
    paused: 'Switch user synchronization on again to resume.',
    disabled: 'Enable the integration to synchronize again.',
    not_connected: 'Connect to Microsoft Entra ID first.',
  };
  function errorBox(r) {
    const box = el('div', undefined, 'alert alert-error');
    box.id = 'run-error';
    box.append(el('p', r.error));
    if (ERROR_HELP[r.errorCode]) box.append(el('p', ERROR_HELP[r.errorCode], 'small'));
    return box;
  }

  function table(heads, rows, id) {
    const wrap = el('div', undefined, 'table-wrap');
    const t = el('table', undefined, 'table');
    if (id) t.id = id;
    const tr = document.createElement('tr');
    heads.forEach((h) => { const th = el('th', h); th.scope = 'col'; tr.append(th); });
    t.createTHead().append(tr);
    const tb = t.createTBody();
    rows.forEach((cells) => { const r = tb.insertRow(); cells.forEach((c) => { r.insertCell().textContent = c; }); });
    wrap.append(t);
    return wrap;
  }

  async function loadRuns() {
    const r = await SB.api('GET', '/api/v1/sync/runs');
    if (!r.ok) return false;
    const runs = Array.isArray(r.data) ? r.data : (r.data.items || []);
    renderRuns(runs);
    if (runs.length && $('run-report').hidden && $('sync-progress').hidden) {
      if (runs[0].state === 'running') watch(runs[0].id); else openRun(runs[0].id);
    }
    return true;
  }

  async function openRun(id) {
    const r = await SB.api('GET', '/api/v1/sync/runs/' + encodeURIComponent(id));
    if (r.ok) renderReport(r.data);
  }

  function progress(run) {
    const box = $('sync-progress');
    box.hidden = false;
    $('progress-title').textContent = run.dryRun ? 'Preparing the preview…' : 'Synchronizing…';
    $('progress-phase').textContent = PHASES[run.phase] || run.phase || '';
    $('progress-counts').textContent = (run.usersRead || 0) + ' users read · ' + (run.created || 0) + ' created · ' + (run.updated || 0) + ' updated · ' + (run.deleted || 0) + ' deleted';
  }

  // watch polls the run until it leaves the running state.
  function watch(id) {
    clearTimeout(polling);
    const tick = async () => {
      const r = await SB.api('GET', '/api/v1/sync/runs/' + encodeURIComponent(id));
      if (!r.ok) { $('sync-progress').hidden = true; SB.toast(SB.errorOf(r).message, true); return; }
      if (r.data.state === 'running') {
        progress(r.data);
        polling = setTimeout(tick, 700);
        return;
      }
      $('sync-progress').hidden = true;
      renderReport(r.data);
      loadRuns();
      statusAfter(r.data.state === 'failed');
    };
    tick();
  }

  // statusAfter reloads the integration status after a run: a failed run
  // may put the integration in error just after the run is published, so
  // a failure is looked at again a moment later.
  function statusAfter(failed) {
    if (!SB.reloadIntegration) return;
    SB.reloadIntegration();
    if (failed) setTimeout(SB.reloadIntegration, 1500);
  }

  async function start(dryRun) {
    $('run-report').hidden = true;
    progress({ dryRun, phase: 'reading' });
    const r = await SB.api('POST', '/api/v1/integration/sync' + (dryRun ? '?dryRun=true' : '?wait=false'));
    if (!r.ok) {
      $('sync-progress').hidden = true;
      SB.toast(SB.errorOf(r).message, true);
      loadRuns(); // a failed run is kept in the history with its report
      statusAfter(true); // and may have put the integration in error
      return;
    }
    if (r.data.state === 'running') { progress(r.data); watch(r.data.id); return; }
    $('sync-progress').hidden = true;
    renderReport(r.data);
    loadRuns();
    statusAfter(r.data.state === 'failed');
  }

  // The automatic schedule (GET/PUT /api/v1/integration/schedule).
  const sched = $('schedule-form');
  function fillSchedule(v) {
    sched.elements.frequency.value = v.frequency || 'daily';
    sched.elements.time.value = v.time || '00:30';
    sched.elements.timeZone.value = v.timeZone || '';
    const days = new Set(v.days || []);
    sched.querySelectorAll('input[name=day]').forEach((c) => { c.checked = days.has(c.value); });
    $('s-days').hidden = sched.elements.frequency.value !== 'weekly';
    const cd = v.changeDetection || {};
    $('s-detect').textContent = (v.nextSyncAt ? 'Next automatic sync: ' + fmt(v.nextSyncAt) + '. ' : '') +
      (cd.mode ? 'Changes in Entra are picked up by ' + (cd.mode === 'notifications' ? 'change notifications' : cd.mode === 'polling' ? 'delta polling' : 'scheduled runs only') + (cd.reason ? ' (' + cd.reason + ')' : '') + '.' : '');
  }
  async function loadSchedule() {
    const r = await SB.api('GET', '/api/v1/integration/schedule');
    sched.hidden = !r.ok;
    if (r.ok) fillSchedule(r.data);
  }
  sched.elements.frequency.addEventListener('change', () => { $('s-days').hidden = sched.elements.frequency.value !== 'weekly'; });
  sched.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    SB.clearErrors(sched);
    const body = { frequency: sched.elements.frequency.value, time: sched.elements.time.value, timeZone: sched.elements.timeZone.value.trim(),
      days: [...sched.querySelectorAll('input[name=day]:checked')].map((c) => c.value) };
    SB.busy(sched, true);
    const r = await SB.api('PUT', '/api/v1/integration/schedule', body);
    SB.busy(sched, false);
    if (!r.ok) { SB.showError(sched, r); return; }
    fillSchedule(r.data);
    SB.toast('Schedule saved');
  });

  $('sync-btn').addEventListener('click', () => start(false));
  $('dryrun-btn').addEventListener('click', () => start(true));

  SB.sync = {
    watch,
    statusChanged: async (st) => {
      if (!available) {
        available = await loadRuns();
        if (available) loadSchedule();
      }
      card.hidden = !available || st.status === 'not_connected';
      $('sync-btn').disabled = st.status !== 'connected';
      $('dryrun-btn').disabled = st.status !== 'connected';
      if (available && st.lastRun && st.lastRun.id && $('run-report').hidden) {
        if (st.lastRun.state === 'running') watch(st.lastRun.id); else renderReport(st.lastRun);
      }
    },
  };
})();
