// The Outlook contacts section: "Run now" (POST
// /api/v1/integration/contacts-sync/run, followed until it ends) and the
// last run's report with the skipped contacts and their reasons.
(function () {
  'use strict';
  const SB = window.SB;
  const $ = (id) => document.getElementById(id);
  const form = $('contacts-form');
  if (!form) return;
  const MAX_SKIPS = 200;
  const STATES = { succeeded: 'Succeeded', partial: 'Partly done', failed: 'Failed', running: 'Running' };
  let polling = null;

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function fmt(s) { const d = new Date(s); return isNaN(d) ? '' : d.toLocaleString(); }

  function render(rep) {
    const box = $('contacts-report');
    if (!rep) { box.replaceChildren(el('p', 'No contacts sync has run yet.', 'muted')); return; }
    const parts = [el('p', fmt(rep.startedAt) + ' · ' + (STATES[rep.state] || rep.state), 'report-head')];
    parts[0].id = 'contacts-state';
    const stats = el('div', undefined, 'stats');
    const skipped = (rep.skipped || []).length;
    for (const [v, label] of [[rep.created, 'Created'], [rep.updated, 'Updated'], [rep.deleted, 'Deleted'], [rep.unchanged, 'Unchanged'],
      [rep.mailboxes, 'Mailboxes'], [skipped, 'Skipped']]) {
      const s = el('div', undefined, 'stat');
      s.append(el('b', String(v || 0)), el('span', label));
      stats.append(s);
    }
    parts.push(stats);
    if (rep.error) parts.push(el('p', rep.error, 'alert alert-error'));
    if (rep.failed) parts.push(el('p', rep.failed + ' mailbox' + (rep.failed === 1 ? '' : 'es') + ' could not be read this time; what was copied from them is kept and the next run tries again.', 'alert alert-warn'));
    if (rep.phonebooks && rep.phonebooks.length) {
      const p = el('p', 'Company phonebooks: ');
      rep.phonebooks.forEach((b, i) => {
        const a = el('a', b.name);
        a.href = '/phonebooks/' + encodeURIComponent(b.id);
        p.append(...(i ? [', ', a] : [a]));
      });
      parts.push(p);
    }
    if (skipped) {
      parts.push(el('h3', 'Skipped contacts'));
      const wrap = el('div', undefined, 'table-wrap');
      const t = el('table', undefined, 'table');
      t.id = 'contacts-skipped';
      const hr = t.createTHead().insertRow();
      for (const h of ['Contact', 'Mailbox', 'Reason']) { const th = el('th', h); th.scope = 'col'; hr.append(th); }
      const tb = t.createTBody();
      for (const s of rep.skipped.slice(0, MAX_SKIPS)) {
        const tr = tb.insertRow();
        tr.insertCell().textContent = s.subject || '—';
        tr.insertCell().textContent = s.mailbox || '';
        tr.insertCell().textContent = s.reason || '';
      }
      wrap.append(t);
      parts.push(wrap);
      if (skipped > MAX_SKIPS) parts.push(el('p', 'Showing ' + MAX_SKIPS + ' of ' + skipped + '.', 'muted small'));
    }
    box.replaceChildren(...parts);
  }

  function running(on) {
    $('contacts-progress').hidden = !on;
    $('contacts-run-btn').disabled = on;
  }

  // follow polls the last run until it is no longer running.
  function follow() {
    clearTimeout(polling);
    running(true);
    const tick = async () => {
      const r = await SB.api('GET', '/api/v1/integration/contacts-sync/run');
      if (r.ok && r.data.state === 'running') { polling = setTimeout(tick, 800); return; }
      running(false);
      if (r.ok) render(r.data);
    };
    tick();
  }

  $('contacts-run-btn').addEventListener('click', async () => {
    running(true);
    const r = await SB.api('POST', '/api/v1/integration/contacts-sync/run');
    if (r.status === 202) { follow(); return; }
    running(false);
    if (r.ok) { render(r.data); SB.toast('Contacts sync finished'); return; }
    SB.toast(SB.errorOf(r).message, true);
    // A failed run keeps its report as the last run.
    const last = await SB.api('GET', '/api/v1/integration/contacts-sync/run');
    if (last.ok && last.data.state !== 'running') render(last.data);
  });

  form.addEventListener('sb:loaded', (ev) => {
    const d = ev.detail || {};
    if (d.running) follow(); else render(d.lastRun);
  });
})();
