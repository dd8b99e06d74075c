"""The status page (issue 18): what customers are told, derived from the monitors and the public updates.

- `state`: pure derivation of component states (monitors, then open incidents) and the 90-day uptime bars;
- `text`: public text cleaned of anything internal (mentions, channel names, check URLs, secrets);
- `queries`: the database side (public updates, the state history, one snapshot of the page's data);
- `render`: pure HTML (Jinja2, autoescaped), JSON and Atom renderings of a `state.Page`;
- `flows`: publishing, the periodic sync (state history, declare/resolve messages) and the hosted mirror;
- `hosted`: the Atlassian Statuspage REST client.

Nothing here imports Slack: the incident channel is told through `flows.StatusNotifier`."""
