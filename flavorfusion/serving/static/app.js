// The restaurant page: the restaurants of a summarize output (/api/restaurants), one card per cultural group
// (/api/restaurant?id=), what the page is and how the groups were formed (/api/about), and a box that summarizes
// pasted reviews (POST /summarize). Every text from the server is set with textContent, never as HTML.
'use strict';

const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const narrow = window.matchMedia('(max-width: 720px)');
let selected = null;  // the business_id shown
let about = {};

async function getJson(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (e) {
    return [0, {}];
  }
  let data = {};
  try { data = await response.json(); } catch (e) { data = {}; }
  return [response.status, data];
}

// what a diner reads when something went wrong, by what was asked for and how the server answered
function humanError(what, status) {
  if (status === 0) return 'The server could not be reached. Check your connection and try again.';
  if (status === 401 || status === 403) {
    return 'Summarizing your own reviews needs an API key on this server; ask whoever runs it.';
  }
  if (status === 404 && what === 'restaurant') {
    return 'This restaurant is not in the list: the link may be out of date.';
  }
  if (status === 413) return 'That is too much text for one summary: paste fewer or shorter reviews.';
  if (status === 408) return 'The reviews took too long to arrive. Try again.';
  if (status === 429 || status === 503) return 'The server is busy right now. Try again in a few seconds.';
  if (status >= 500) return 'Something went wrong on the server. Try again later.';
  if (what === 'reviews') return 'These reviews could not be summarized. Check that each one is plain text.';
  if (what === 'restaurants') return 'The restaurant list could not be loaded. Reload the page to try again.';
  return 'Something went wrong (error ' + status + '). Reload the page to try again.';
}

function explainGroups(data) {
  const box = document.getElementById('explain-text');
  box.replaceChildren();
  const lines = [
    'A group is the reviewers of this restaurant who share a cultural background, as far as the data can tell. ' +
    'Each group gets its own summary, written from its own reviews only.',
    data.grouping_text,
    'Confidence: ' + data.confidence_text,
    'A group with fewer than ' + data.min_group_reviews + ' reviews shows no summary: too few to say what the ' +
    'group thinks.',
    '"Mentioned more by this group than by the others" lists the words and phrases this group\'s reviewers use ' +
    'clearly more often than the restaurant\'s other groups (a statistical test), with a sentence from one of ' +
    'their reviews.',
  ];
  for (const line of lines) if (line) box.append(el('p', '', line));
}

async function loadAbout() {
  const [status, data] = await getJson('/api/about');
  if (status !== 200) return;
  about = data;
  document.getElementById('about').textContent = data.text;
  const demo = document.getElementById('demo');
  demo.hidden = !data.demo;
  if (data.demo) demo.textContent = data.demo_text;
  explainGroups(data);
}

function markSelected() {
  document.querySelectorAll('#restaurants button').forEach(b => {
    const on = b.dataset.id === selected;
    b.classList.toggle('selected', on);
    if (on) b.setAttribute('aria-current', 'true'); else b.removeAttribute('aria-current');
  });
}

async function search(query) {
  const [status, data] = await getJson('/api/restaurants?q=' + encodeURIComponent(query));
  const list = document.getElementById('restaurants');
  const count = document.getElementById('count');
  list.replaceChildren();
  if (status !== 200) { count.textContent = humanError('restaurants', status); count.className = 'error'; return; }
  count.className = 'muted';
  for (const item of data.restaurants) {
    const li = el('li');
    const b = el('button', '', item.name);
    b.type = 'button';
    b.dataset.id = item.business_id;
    b.append(el('div', 'muted', item.n_groups + (item.n_groups === 1 ? ' group' : ' groups')));
    b.addEventListener('click', () => show(item.business_id, true));
    li.append(b);
    list.append(li);
  }
  count.textContent = data.restaurants.length + ' of ' + data.total + ' restaurants';
  markSelected();
}

function card(g) {
  const c = el('article', 'card group' + (g.enough_reviews ? '' : ' too-few'));
  c.dataset.group = g.group;
  const name = el('abbr', '', g.label || g.group);
  name.title = 'group code: ' + g.group;
  const h = el('h3');
  h.append(name);
  c.append(h);
  const meta = [g.n_reviews === null ? 'reviews: unknown'
    : g.n_reviews + (g.n_reviews === 1 ? ' review' : ' reviews')];
  if (g.group_confidence !== null) meta.push('confidence ' + Math.round(g.group_confidence * 100) + '%');
  c.append(el('div', 'meta', meta.join(' · ')));
  c.append(el('p', 'summary', g.enough_reviews ? g.summary : 'Not enough reviews for a summary.'));
  if (g.distinctive_terms && g.distinctive_terms.length) {
    const box = el('div', 'contrast');
    box.append(el('h4', '', 'Mentioned more by this group than by the others'));
    const list = el('ul', 'terms');
    for (const t of g.distinctive_terms) {
      const li = el('li', '', t.term);
      li.title = 'z = ' + t.z.toFixed(1);
      list.append(li);
    }
    box.append(list);
    for (const q of g.quotes || []) box.append(el('blockquote', '', '\u201c' + q.text + '\u201d'));
    c.append(box);
  }
  return c;
}

// show a restaurant; `remember`: a new history entry (a click), not Back/Forward or a link being opened
async function show(id, remember) {
  selected = id;
  markSelected();
  if (remember) {
    const url = new URL(window.location.href);
    url.searchParams.set('restaurant', id);
    history.pushState({restaurant: id}, '', url);
  }
  const [status, data] = await getJson('/api/restaurant?id=' + encodeURIComponent(id));
  if (selected !== id) return;  // another restaurant was picked meanwhile
  const title = document.getElementById('restaurant-name');
  const groups = document.getElementById('groups');
  groups.replaceChildren();
  if (status !== 200) {
    title.textContent = humanError('restaurant', status);
    title.className = 'error';
  } else {
    title.textContent = data.name;
    title.className = '';
    document.title = data.name + ' · FlavorFusion';
    for (const g of data.groups) groups.append(card(g));
  }
  // the cards sit below the list on a phone: bring them into view; the heading takes the focus for keyboards
  title.focus({preventScroll: true});
  if (narrow.matches) title.scrollIntoView({block: 'start'});
}

function clear() {
  selected = null;
  markSelected();
  document.getElementById('restaurant-name').textContent = 'Pick a restaurant';
  document.getElementById('restaurant-name').className = '';
  document.getElementById('groups').replaceChildren();
  document.title = 'FlavorFusion';
}

function fromUrl() {
  const id = new URL(window.location.href).searchParams.get('restaurant');
  if (id) show(id, false); else clear();
}

async function summarizeOwn() {
  const out = document.getElementById('own-result');
  const reviews = document.getElementById('own-reviews').value.split(/\n\s*\n/).map(s => s.trim()).filter(Boolean);
  if (!reviews.length) {
    out.className = 'error';
    out.textContent = 'Paste at least one review first (one per paragraph).';
    return;
  }
  out.className = '';
  out.textContent = 'Summarizing...';
  const [status, data] = await getJson('/summarize', {
    method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({reviews})});
  if (status === 200) {
    out.textContent = data.summary;
  } else {
    out.className = 'error';
    out.textContent = humanError('reviews', status);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('search').addEventListener('input', e => search(e.target.value));
  document.getElementById('own-submit').addEventListener('click', summarizeOwn);
  window.addEventListener('popstate', fromUrl);
  loadAbout();
  search('');
  fromUrl();
});
