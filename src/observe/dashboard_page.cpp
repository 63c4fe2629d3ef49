// The dashboard's one page: HTML, CSS and script in one document, nothing
// fetched but the dashboard's own API. It loads the board, workers, queue and
// runs once, then follows /api/events (resuming after the sequence number the
// first load saw) and moves cards, workers and charts as events arrive.
// For tests and scripts it keeps counts on <body>: data-events (events
// applied), data-moves (cards moved between columns), data-ready (first load
// done); each chart's <canvas> has data-points (points drawn).
#include <agentcore/observe/dashboard.hpp>

namespace agentcore::observe {

std::string_view dashboard_page() {
  static constexpr std::string_view page = R"page(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>agentcore</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root{--bg:#0f1419;--panel:#171d24;--line:#2a323c;--text:#d7dde3;--dim:#8a96a3;--ok:#4caf78;--bad:#e06c6c;--warn:#d9a650;--acc:#5ea1e6}
*{box-sizing:border-box}body{margin:0;font:13px/1.4 system-ui,sans-serif;background:var(--bg);color:var(--text)}
header{display:flex;gap:18px;align-items:baseline;padding:10px 16px;border-bottom:1px solid var(--line)}
header h1{font-size:16px;margin:0}header .fig b{font-size:15px}.dim{color:var(--dim)}
main{display:grid;grid-template-columns:1fr 360px;gap:12px;padding:12px}
section{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:8px 10px;min-width:0}
h2{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--dim);margin:0 0 6px}
#board{display:grid;grid-template-columns:repeat(8,minmax(0,1fr));gap:6px}
.col{background:#11161c;border-radius:4px;padding:4px;min-height:80px}.col h3{font-size:11px;margin:2px 2px 6px;color:var(--dim)}
.card{background:#1e252e;border:1px solid var(--line);border-left:3px solid var(--acc);border-radius:4px;padding:4px 6px;margin-bottom:4px;cursor:pointer;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.card[data-state=merged]{border-left-color:var(--ok)}.card[data-state=rejected],.card[data-state=failed]{border-left-color:var(--bad)}
.card[data-state=abandoned],.card[data-state=reverted]{border-left-color:var(--warn)}.card .id{font-family:ui-monospace,monospace;font-size:11px;color:var(--dim)}
table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:2px 4px;border-bottom:1px solid var(--line);white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:140px}
canvas{width:100%;height:120px;display:block}
#detail pre{white-space:pre-wrap;font-size:11px;max-height:260px;overflow:auto;margin:0}
.side{display:flex;flex-direction:column;gap:12px}
#status.live{color:var(--ok)}#status.down{color:var(--bad)}
</style></head>
<body data-events="0" data-moves="0" data-ready="0">
<header><h1>agentcore</h1><span id="run" class="dim">no run yet</span>
<span class="fig">merged <b id="merged">0</b></span><span class="fig">queue <b id="depth">0</b></span>
<span class="fig">tokens <b id="tokens">0</b></span><span class="fig">cost <b id="cost">0.0000</b></span>
<span id="status" class="dim">connecting</span></header>
<main><div class="side">
<section><h2>Board</h2><div id="board"></div></section>
<section><h2>Throughput (merges per minute)</h2><canvas id="throughput" data-points="0"></canvas></section>
<section><h2>Cost over time</h2><canvas id="costchart" data-points="0"></canvas></section>
</div><div class="side">
<section><h2>Workers</h2><table><thead><tr><th>worker</th><th>task</th><th>phase</th><th>since</th></tr></thead><tbody id="workers"></tbody></table></section>
<section><h2>Merge queue</h2><table><tbody id="queue"></tbody></table></section>
<section id="detail"><h2>Task</h2><div id="detailbody" class="dim">click a task</div></section>
</div></main>
<script>
"use strict";
const STATES=["proposed","ready","claimed","submitted","merged","rejected","failed","abandoned","reverted"];
const token=new URLSearchParams(location.search).get("token");
const headers=token?{Authorization:"Bearer "+token}:{};
const $=id=>document.getElementById(id);
const cards=new Map(), workers=new Map(), queue=new Map();
const merges=[], costs=[]; let cost=0, tokens=0, mergedCount=0, lastSeq=0, snapSeq=0, source=null;
function esc(s){return String(s).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]))}
function count(name,n){document.body.dataset[name]=String(Number(document.body.dataset[name])+n)}
function buildBoard(){const b=$("board");b.innerHTML="";for(const s of STATES){const c=document.createElement("div");
 c.className="col";c.dataset.state=s;c.innerHTML="<h3>"+s+" <span class=n>0</span></h3>";b.appendChild(c)}}
function column(state){return document.querySelector('#board .col[data-state="'+state+'"]')}
function recount(){for(const c of document.querySelectorAll("#board .col"))c.querySelector(".n").textContent=c.querySelectorAll(".card").length}
function place(id,state,title){let el=cards.get(id);const col=column(state);if(!col){if(el){el.remove();cards.delete(id)}recount();return}
 if(!el){el=document.createElement("div");el.className="card";el.dataset.task=id;el.onclick=()=>detail(id);cards.set(id,el)}
 else if(el.dataset.state!==state)count("moves",1);
 el.dataset.state=state;if(title!==undefined)el.innerHTML='<span class=id>'+esc(id)+'</span> '+esc(title||"");col.appendChild(el);recount()}
function since(t){const s=(Date.now()-Date.parse(t))/1000;return s<60?s.toFixed(0)+"s":Math.floor(s/60)+"m"+String(Math.floor(s%60)).padStart(2,"0")+"s"}
function drawWorkers(){$("workers").innerHTML=[...workers.entries()].sort().map(([w,s])=>"<tr><td>"+esc(w)+"</td><td>"+esc(s.task||"-")+"</td><td>"+esc(s.phase)+"</td><td>"+(s.task?since(s.since):"")+"</td></tr>").join("")}
function drawQueue(){$("queue").innerHTML=[...queue.entries()].map(([c,t])=>"<tr><td>"+esc(c)+"</td><td class=dim>"+since(t)+"</td></tr>").join("")||'<tr><td class=dim>empty</td></tr>';$("depth").textContent=queue.size}
function chart(canvas,points,color){const r=devicePixelRatio||1,w=canvas.clientWidth,h=canvas.clientHeight;canvas.width=w*r;canvas.height=h*r;
 const g=canvas.getContext("2d");g.scale(r,r);g.clearRect(0,0,w,h);g.strokeStyle="#2a323c";g.beginPath();g.moveTo(0,h-.5);g.lineTo(w,h-.5);g.stroke();
 canvas.dataset.points=String(points.length);if(points.length<1)return;
 const x0=points[0][0],x1=Math.max(points[points.length-1][0],x0+1),ymax=Math.max(...points.map(p=>p[1]),1e-9)*1.15;
 g.strokeStyle=color;g.fillStyle=color;g.lineWidth=2;g.beginPath();points.forEach((p,i)=>{const x=(p[0]-x0)/(x1-x0)*(w-8)+4,y=h-4-p[1]/ymax*(h-12);i?g.lineTo(x,y):g.moveTo(x,y);
 if(points.length===1)g.fillRect(x-2,y-2,4,4)});g.stroke();
 g.fillStyle="#8a96a3";g.font="11px system-ui";g.fillText(String(+(ymax/1.15).toFixed(4)),4,11)}
const pageStart=Date.now();
function drawCharts(){const now=Date.now(),pts=[],per=t=>merges.filter(m=>m>t-60000&&m<=t).length;
 if(merges.length){const start=Math.min(pageStart,merges[0]),step=Math.max(1000,(now-start)/60);
  for(let t=start;t<now;t+=step)pts.push([t,per(t)]);pts.push([now,per(now)])}
 chart($("throughput"),pts,"#4caf78");chart($("costchart"),costs,"#d9a650")}
function figures(){$("merged").textContent=mergedCount;$("cost").textContent=cost.toFixed(4);$("tokens").textContent=tokens}
function apply(e){const d=e.data||{};lastSeq=Math.max(lastSeq,e.seq);count("events",1);
 if(e.type==="board.task_transition"){place(d.id,d.to,d.created?d.id:undefined)}
 else if(e.type==="roles.worker_phase"){const done=["merged","rejected","abandoned","released","claim_lost","submitted","idle"].includes(d.phase);
  workers.set(d.worker,done?{task:"",phase:"idle",since:e.time}:{task:d.task,phase:d.phase,since:e.time});drawWorkers();
  if(d.phase==="claimed"&&d.detail&&cards.get(d.task))cards.get(d.task).innerHTML='<span class=id>'+esc(d.task)+'</span> '+esc(d.detail)}
 else if(e.type==="gate.verdict"){if(d.verdict==="queued")queue.set(d.change,e.time);else queue.delete(d.change);
  if(d.verdict==="merged"){if(e.seq>snapSeq)mergedCount++;merges.push(Date.parse(e.time))}drawQueue();drawCharts()}
 else if(e.type==="agent.turn"){cost+=d.cost||0;tokens+=(d.input_tokens||0)+(d.output_tokens||0);costs.push([Date.parse(e.time),cost]);drawCharts()}
 else if(e.type==="runtime.swarm"){$("run").textContent=(e.run||"run")+": "+d.what+(d.detail?" - "+d.detail:"")}
 figures()}
async function get(path){const r=await fetch(path,{headers});if(!r.ok)throw new Error(path+": "+r.status);return r.json()}
async function detail(id){try{const t=await get("/api/tasks/"+encodeURIComponent(id));const task=t.task,res=task.result||{};
 const verdicts=t.events.filter(e=>e.type==="gate.verdict").map(e=>e.data);
 let html="<b>"+esc(task.id)+"</b> "+esc(task.title||"")+"<br><span class=dim>"+esc(task.state)+", attempt "+esc(task.attempts||0)+"</span><pre>";
 const paths=res.paths||(verdicts.length?verdicts[verdicts.length-1].paths:[])||[];
 html+="files changed: "+paths.length+(paths.length?" ("+paths.map(esc).join(", ")+")":"")+"\n";
 for(const v of verdicts)html+="verdict "+esc(v.verdict)+" "+esc(v.change)+(v.detail?": "+esc(v.detail.split("\n")[0]):"")+"\n";
 for(const e of t.events)html+=esc(e.time.slice(11,19))+" "+esc(e.type)+" "+esc(JSON.stringify(e.data).slice(0,160))+"\n";
 $("detailbody").innerHTML=html+"</pre>"}catch(err){$("detailbody").textContent=String(err)}}
function follow(){const q=new URLSearchParams({since:String(lastSeq)});if(token)q.set("token",token);
 source=new EventSource("/api/events?"+q.toString());source.onopen=()=>{$("status").textContent="live";$("status").className="live"};
 source.onerror=()=>{$("status").textContent="reconnecting";$("status").className="down"};
 source.addEventListener("reset",()=>{source.close();load()});
 source.onmessage=null;const types=["board.task_transition","roles.worker_phase","gate.verdict","gate.step","gate.branch_moved","agent.turn","agent.tool_call","agent.outcome","agent.command","roles.plan","roles.judgement","runtime.swarm","model.agent_event"];
 for(const t of types)source.addEventListener(t,m=>apply(JSON.parse(m.data)))}
async function load(){try{buildBoard();cards.clear();const [t,w,q,r]=await Promise.all([get("/api/tasks"),get("/api/workers"),get("/api/queue"),get("/api/runs")]);
 lastSeq=Math.min(t.seq,w.seq,q.seq,r.seq);snapSeq=t.seq;for(const task of t.tasks)place(task.id,task.state,task.title);
 for(const x of w.workers)workers.set(x.worker,{task:x.task,phase:x.phase,since:x.since});for(const x of q.queued)queue.set(x.change,x.since);
 mergedCount=t.tasks.filter(x=>x.state==="merged").length;const run=r.runs[r.runs.length-1];if(run)$("run").textContent=run.run+(run.finished?": finished - "+run.reason:": running, cycle "+(run.cycles.length+1));
 drawWorkers();drawQueue();drawCharts();figures();document.body.dataset.ready="1";follow()}
 catch(err){$("status").textContent=String(err);$("status").className="down";setTimeout(load,2000)}}
setInterval(()=>{drawWorkers();drawQueue();drawCharts()},5000);
load();
</script></body></html>
)page";
  return page;
}

}  // namespace agentcore::observe
