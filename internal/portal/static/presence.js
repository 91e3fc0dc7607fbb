// The Teams presence section's status (GET /api/v1/presence-sync/status):
// how many synced users follow Teams by change notifications and how many
// by polling, the subscription, and each user's path and presence.
(function () {
  'use strict';
  const SB = window.SB;
  const $ = (id) => document.getElementById(id);
  const box = $('presence-status');
  const form = $('presence-form');
  if (!box || !form) return;
  const MAX_ROWS = 100;
  const LABELS = { available: 'Available', away: 'Away', do_not_disturb: 'Do not disturb', lunch_break: 'Lunch break', business_trip: 'Business trip', off_work: 'Off work' };

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function fmt(s) { const d = new Date(s); return isNaN(d) ? '' : d.toLocaleString(); }
  function fact(label, value) { const s = el('span'); s.append(el('b', value), ' ' + label); return s; }

  function render(st) {
    const sum = $('presence-summary');
    const parts = [fact(st.enabled ? '(' + (st.direction === 'two-way' ? 'two-way' : 'one-way') + ')' : '', st.enabled ? 'On' : 'Off'),
      fact('by change notifications', String(st.notificationUsers || 0)),
      fact('by polling' + (st.pollingUsers ? ', every ' + Math.round(st.pollIntervalSeconds || 0) + ' s' : ''), String(st.pollingUsers || 0))];
    if (st.subscription) parts.push(fact('users in the subscription, renewed before ' + fmt(st.subscription.expiresAt), String(st.subscription.users)));
    if (st.lastRoundAt) parts.push(el('span', 'Last poll ' + fmt(st.lastRoundAt), 'muted'));
    sum.replaceChildren(...parts);
    const errs = [st.subscriptionError && 'Change notifications: ' + st.subscriptionError, st.lastError && 'Polling: ' + st.lastError].filter(Boolean);
    $('presence-error').hidden = !errs.length;
    $('presence-error').textContent = errs.join(' · ');
    const users = st.users || [];
    const tb = $('presence-users').tBodies[0];
    if (!users.length) {
      const tr = el('tr');
      const td = el('td', 'No extension follows Teams presence yet. Switch it on for synced extensions on the Extensions page.', 'empty');
      td.colSpan = 4;
      tr.append(td);
      tb.replaceChildren(tr);
    } else {
      tb.replaceChildren(...users.slice(0, MAX_ROWS).map((u) => {
        const tr = el('tr');
        tr.dataset.number = u.number;
        const path = el('span', u.path === 'notification' ? 'Change notifications' : u.path === 'polling' ? 'Polling' : 'Waiting for the first round', 'path' + (u.path ? ' path-' + u.path : ''));
        const pres = el('td', (LABELS[u.presence] || u.presence || '') + (u.held ? ' · held by a call' : ''));
        const td = el('td');
        td.append(path);
        tr.append(el('td', u.number, 'mono'), el('td', [u.availability, u.activity && u.activity !== u.availability ? u.activity : ''].filter(Boolean).join(' · ') || '—'), pres, td);
        return tr;
      }));
    }
    $('presence-more').hidden = users.length <= MAX_ROWS;
    $('presence-more').textContent = 'Showing ' + MAX_ROWS + ' of ' + users.length + ' users.';
  }

  async function load() {
    const r = await SB.api('GET', '/api/v1/presence-sync/status');
    box.hidden = !r.ok;
    if (r.ok) render(r.data);
  }
  form.addEventListener('sb:loaded', load);
  form.addEventListener('sb:saved', load);
  $('presence-refresh').addEventListener('click', load);
})();
