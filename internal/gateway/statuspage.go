package gateway

import (
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/salamander-chat/salamander"
)

// The public status page every site serves at /status: for the people who
// chat, not for engineers (the technical view is the ops console's). It
// says how each service is doing, what the current incident is and how it
// went, in Korean and English, from this site's copy of the log — so any
// surviving site tells the same story while another burns.

// Service states on the status page, from the worst impact of the open
// incidents that name the service.
const (
	serviceOperational   = "operational"
	serviceDegraded      = "degraded"
	servicePartialOutage = "partial_outage"
	serviceMajorOutage   = "major_outage"
)

// ServiceState is one service as the status page shows it.
type ServiceState struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// serviceStates derives each service's state from the open incidents.
func serviceStates(open []salamander.Incident) []ServiceState {
	out := make([]ServiceState, 0, len(salamander.Services))
	for _, s := range salamander.Services {
		worst := -1
		for _, inc := range open {
			if slices.Contains(inc.Services, s) {
				worst = max(worst, slices.Index(salamander.Impacts, inc.Impact))
			}
		}
		state := serviceOperational
		switch worst {
		case 0:
			state = serviceDegraded
		case 1:
			state = servicePartialOutage
		case 2:
			state = serviceMajorOutage
		}
		out = append(out, ServiceState{Name: s, State: state})
	}
	return out
}

// statusText is the page's fixed text in each language.
var statusText = map[string]map[string]string{
	"en": {
		"title": "Salamander status", "allOK": "All services are operating normally",
		"notOK": "Some services are affected", "current": "Current incidents", "history": "Past incidents",
		"none": "No incidents in the recorded history.", "servedBy": "This page is served by site",
		"everySite": "every site serves it, so it stays up when a data center does not",
		"resolved":  "Resolved", "started": "Started", "lang": "한국어", "langCode": "ko", "updated": "Updated",
		"messaging": "Messaging", "login": "Login", "history_svc": "Chat history",
		"operational": "Operational", "degraded": "Degraded performance", "partial_outage": "Partial outage",
		"major_outage": "Major outage", "investigating": "Investigating", "identified": "Identified",
		"monitoring": "Monitoring", "resolved_state": "Resolved", "report": "Harmed by an outage? Signed-in users can file a damage report in the app.",
		"stale": "This site is not up to date right now (cut off from the other sites, or catching up): what it shows may be old. See another site's page:",
	},
	"ko": {
		"title": "Salamander 서비스 상태", "allOK": "모든 서비스가 정상 운영 중입니다",
		"notOK": "일부 서비스에 장애가 있습니다", "current": "진행 중인 장애", "history": "지난 장애",
		"none": "기록된 장애가 없습니다.", "servedBy": "이 페이지를 제공하는 사이트:",
		"everySite": "모든 사이트가 이 페이지를 제공하므로 데이터센터 하나가 멈춰도 볼 수 있습니다",
		"resolved":  "해결", "started": "발생", "lang": "English", "langCode": "en", "updated": "갱신",
		"messaging": "메시지", "login": "로그인", "history_svc": "대화 기록",
		"operational": "정상", "degraded": "성능 저하", "partial_outage": "부분 장애", "major_outage": "전면 장애",
		"investigating": "원인 조사 중", "identified": "원인 확인", "monitoring": "복구 후 모니터링 중",
		"resolved_state": "해결됨", "report": "장애로 피해를 입으셨나요? 로그인한 사용자는 앱에서 피해 신고를 할 수 있습니다.",
		"stale": "이 사이트는 지금 최신 상태가 아닙니다(다른 사이트와 연결이 끊겼거나 따라잡는 중). 표시된 내용이 오래되었을 수 있습니다. 다른 사이트의 페이지를 보세요:",
	},
}

// pageLang picks the page's language: ?lang= first, then the browser's
// Accept-Language (Korean or English, whichever it weighs more; the first
// of them on a tie), else English.
func pageLang(r *http.Request) string {
	if l := r.URL.Query().Get("lang"); l == "ko" || l == "en" {
		return l
	}
	best, bestQ := "en", 0.0
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(part, ";")
		tag = strings.ToLower(strings.TrimSpace(tag))
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 && f <= 1 {
				q = f
			}
		}
		lang := ""
		switch {
		case strings.HasPrefix(tag, "ko"):
			lang = "ko"
		case strings.HasPrefix(tag, "en"):
			lang = "en"
		}
		if lang != "" && q > bestQ {
			best, bestQ = lang, q
		}
	}
	return best
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"svc": func(t map[string]string, name string) string {
		if name == salamander.ServiceHistory {
			return t["history_svc"]
		}
		return t[name]
	},
	"state": func(t map[string]string, s string) string {
		if s == salamander.IncidentResolved {
			return t["resolved_state"]
		}
		return t[s]
	},
	"tr":   func(l salamander.Localized, lang string) string { return l.In(lang) },
	"dict": func(p *statusPageData, i salamander.Incident) map[string]any { return map[string]any{"P": p, "I": i} },
	"when": func(t time.Time, lang string) string {
		if lang == "ko" {
			return t.In(kst).Format("2006-01-02 15:04 KST")
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
}).Parse(`<!doctype html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30"><title>{{.T.title}}</title>
<style>
:root{--ok:#1a7f37;--minor:#b08800;--major:#d1242f;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--bg:#151b23}body{background:#0d1117}}
body{font:16px/1.5 system-ui,-apple-system,"Apple SD Gothic Neo","Malgun Gothic",sans-serif;color:var(--fg);margin:0}
main{max-width:760px;margin:0 auto;padding:24px 16px}
header{display:flex;justify-content:space-between;align-items:center}
h1{font-size:22px;margin:0}h2{font-size:18px;margin:32px 0 12px}
.banner{border-radius:8px;padding:16px;color:#fff;font-weight:600;margin:20px 0}
.banner.ok{background:var(--ok)}.banner.bad{background:var(--major)}.banner.minor{background:var(--minor)}
.banner.stale{background:var(--bg);color:var(--fg);border:2px solid var(--minor);font-weight:400}
ul.svc{list-style:none;padding:0;margin:0;border:1px solid var(--line);border-radius:8px}
ul.svc li{display:flex;justify-content:space-between;padding:12px 16px;border-top:1px solid var(--line)}
ul.svc li:first-child{border-top:0}
.operational{color:var(--ok)}.degraded{color:var(--minor)}.partial_outage,.major_outage{color:var(--major)}
.inc{border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin-bottom:12px;background:var(--bg)}
.inc h3{margin:0 0 4px;font-size:16px}.meta{color:var(--muted);font-size:14px}
ol.tl{list-style:none;padding:0;margin:8px 0 0}ol.tl li{padding:6px 0;border-top:1px dashed var(--line)}
ol.tl b{text-transform:capitalize}a{color:inherit}
footer{margin-top:40px;color:var(--muted);font-size:14px}
</style></head><body><main>
<header><h1>{{.T.title}}</h1><a href="?lang={{.T.langCode}}" lang="{{.T.langCode}}">{{.T.lang}}</a></header>
{{if .Stale}}<div class="banner stale" role="alert">{{.T.stale}} {{range .Sites}}{{if ne .Name $.Site}}<a href="{{.URL}}/status?lang={{$.Lang}}">{{.Name}}</a> {{end}}{{end}}</div>{{end}}
{{if .Open}}<div class="banner {{if .Minor}}minor{{else}}bad{{end}}" role="status">{{.T.notOK}}</div>{{else if not .Stale}}<div class="banner ok" role="status">{{.T.allOK}}</div>{{end}}
<ul class="svc">{{range .Services}}<li><span>{{svc $.T .Name}}</span><span class="{{.State}}">{{index $.T .State}}</span></li>{{end}}</ul>
{{if .Open}}<h2>{{.T.current}}</h2>{{range .Open}}{{template "inc" (dict $ .)}}{{end}}{{end}}
<h2>{{.T.history}}</h2>
{{if .History}}{{range .History}}{{template "inc" (dict $ .)}}{{end}}{{else}}<p class="meta">{{.T.none}}</p>{{end}}
<footer><p>{{.T.report}}</p><p>{{.T.servedBy}} <b>{{.Site}}</b> — {{.T.everySite}}.
{{range .Sites}}<a href="{{.URL}}/status?lang={{$.Lang}}">{{.Name}}</a> {{end}}</p></footer>
</main></body></html>
{{define "inc"}}{{$p := .P}}{{with .I}}<section class="inc"><h3>{{tr .Title $p.Lang}}</h3>
<div class="meta">{{state $p.T .State}} · {{$p.T.started}} {{when .StartedAt $p.Lang}}{{if not .ResolvedAt.IsZero}} · {{$p.T.resolved}} {{when .ResolvedAt $p.Lang}}{{end}}</div>
<ol class="tl" reversed>{{range .Updates}}<li><b>{{state $p.T .State}}</b> — {{tr .Message $p.Lang}} <span class="meta">{{when .At $p.Lang}}</span></li>{{end}}</ol>
</section>{{end}}{{end}}`))

// kst is Korea Standard Time (UTC+9, no daylight saving).
var kst = time.FixedZone("KST", 9*60*60)

type statusPageData struct {
	Lang          string
	T             map[string]string
	Site          string
	Sites         []SiteInfo
	Services      []ServiceState
	Open, History []salamander.Incident
	// Stale: this site is not serving (cut off, catching up, its log
	// damaged), so its copy of the incidents may be behind the others'.
	Stale bool
	// Minor: every open incident is of minor impact.
	Minor bool
}

func (g *Gateway) handleStatusPage(w http.ResponseWriter, r *http.Request) {
	lang := pageLang(r)
	open, history := g.incidentLists()
	slices.Reverse(open) // oldest open incident first: it is the one people know about
	for _, inc := range append(open, history...) {
		slices.Reverse(inc.Updates) // newest update on top
	}
	data := &statusPageData{Lang: lang, T: statusText[lang], Site: g.cfg.Site, Sites: g.cfg.Sites,
		Services: serviceStates(open), Open: open, History: history, Stale: g.serving() != nil, Minor: true}
	for _, inc := range open {
		data.Minor = data.Minor && inc.Impact == salamander.ImpactMinor
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Language", lang)
	h.Set("Vary", "Accept-Language")
	// Its own inline style only: no script, no framing by another page.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if err := statusPage.Execute(w, data); err != nil {
		g.log.Error("status page", "err", err)
	}
}
