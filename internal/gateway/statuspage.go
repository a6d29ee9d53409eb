package gateway

import (
	"context"
	"html/template"
	"net/http"
	"sort"
	"time"
)

// statusPage is the human status page every site serves at /status: which
// site this is, whether it can serve, how far its read model has applied
// the log, and who leads each stream. It needs nothing but this site.
var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Salamander site {{.Site}}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}.ok{color:#176f2c}.bad{color:#b00020;font-weight:bold}</style>
</head><body>
<h1>Salamander — site {{.Site}}</h1>
<p>{{if .Serving}}<span class="ok">serving</span>{{else}}<span class="bad">not serving</span>{{end}}
 · NATS {{if .Connected}}<span class="ok">connected</span> ({{.Server}}){{else}}<span class="bad">disconnected</span>{{end}}
 {{if .Isolated}}· <span class="bad">cut off from the other sites</span>{{end}}
 · {{.Devices}} users connected here · up {{.Uptime}}</p>
<h2>Streams</h2>
<table><tr><th>stream</th><th>applied here</th><th>last in log</th><th>leader</th><th>replicas</th></tr>
{{range .Streams}}<tr><td>{{.Name}}</td><td>{{.Applied}}</td><td>{{.Last}}</td>
<td>{{if .Leader}}{{.Leader}}{{else}}<span class="bad">electing</span>{{end}}</td><td>{{.Replicas}}</td></tr>
{{end}}</table>
{{if .Err}}<p class="bad">cluster status unavailable: {{.Err}}</p>{{end}}
<p>Every site serves this page, the API, <a href="/metrics">/metrics</a>, <a href="/v1/status">/v1/status</a> and
<a href="/openapi.yaml">/openapi.yaml</a>. Other sites: {{range .Sites}}<a href="{{.URL}}/status">{{.Name}}</a> {{end}}</p>
</body></html>`))

type statusRow struct {
	Name          string
	Applied, Last uint64
	Leader        string
	Replicas      []string
}

func (g *Gateway) handleStatusPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 1500*time.Millisecond)
	defer cancel()
	applied := appliedRecords(g.cfg.View)
	rows := map[string]*statusRow{}
	for s, seq := range applied {
		rows[s] = &statusRow{Name: s, Applied: seq}
	}
	streams, err := g.cfg.Store.Status(ctx)
	for _, st := range streams {
		row := rows[st.Stream]
		if row == nil {
			row = &statusRow{Name: st.Stream}
			rows[st.Stream] = row
		}
		row.Last, row.Leader, row.Replicas = st.LastSeq, st.Leader, st.Replicas
	}
	var list []statusRow
	for _, row := range rows {
		list = append(list, *row)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	data := map[string]any{
		"Site":      g.cfg.Site,
		"Connected": g.cfg.Store.Conn().IsConnected(),
		"Server":    g.cfg.Store.Conn().ConnectedServerName(),
		"Isolated":  g.Isolated(),
		"Serving":   g.cfg.Store.Conn().IsConnected() && !g.Isolated() && g.cfg.View.HasSigningKey(),
		"Devices":   g.hub.users(),
		"Uptime":    time.Since(g.started).Round(time.Second).String(),
		"Streams":   list,
		"Sites":     g.cfg.Sites,
		"Err":       "",
	}
	if err != nil {
		data["Err"] = err.Error()
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := statusPage.Execute(w, data); err != nil {
		g.log.Error("status page", "err", err)
	}
}
