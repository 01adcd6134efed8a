//! The OpenAPI 3.1 document, generated from the handlers and schemas in this crate, and a
//! small self-contained page that lists it (no remote scripts).

use axum::response::{Html, IntoResponse, Response};
use utoipa::OpenApi;

use crate::{catalog, dto, jobs, ops, problem, tiles, ws};

/// The API's OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Constellation",
        description = "Satellite tile processing jobs: submit recipes or band-math expressions over \
                       raster scenes, follow their tiles live, fetch COG and STAC outputs. Errors \
                       are RFC 7807 problem+json; every response carries an x-request-id.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        jobs::create_job, jobs::list_jobs, jobs::get_job, jobs::cancel_job, jobs::retry_job,
        jobs::delete_job, jobs::bulk_jobs, jobs::job_tasks, jobs::job_logs, jobs::job_footprints,
        jobs::job_stac, tiles::tilejson, tiles::tile, catalog::recipes, catalog::workers, catalog::search_footprints, ws::ws,
        ops::healthz, ops::readyz, ops::metrics,
    ),
    components(schemas(
        problem::Problem, problem::FieldError, dto::CreateJob, dto::GeoJsonPolygon, dto::InputDto, dto::JobDto,
        dto::JobPage, dto::JobStateDto, dto::TaskStateDto, dto::OutputsDto, dto::BulkAction,
        dto::BulkRequest, dto::BulkResult, dto::JobFilterDto, dto::TaskDto, dto::TaskKindDto,
        dto::TaskList, dto::LogDto, dto::LogPage, dto::RecipeDto, dto::RecipeList,
        dto::WorkerDto, dto::WorkerList, dto::GpuSampleDto, dto::FeatureCollection, dto::Health,
    )),
    tags(
        (name = "jobs", description = "Jobs, their tasks, logs, footprints and outputs"),
        (name = "catalog", description = "Recipes, workers and spatial search"),
        (name = "events", description = "The live event stream"),
        (name = "ops", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `/openapi.json` serves and `api/openapi.json` holds).
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
        .into_response()
}

/// `GET /docs`: every operation with its parameters and responses, rendered in the page
/// from `/openapi.json`.
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Constellation API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;color:#111;background:#fff}
h2{border-bottom:1px solid #ccc;margin-top:2rem}.op{margin:.75rem 0;padding:.5rem .75rem;border:1px solid #ddd;border-radius:6px}
.m{display:inline-block;min-width:4.5rem;font-weight:700;color:#0b4f8a}code{background:#f3f3f3;padding:0 .2rem}
pre{background:#f6f6f6;padding:.5rem;overflow:auto;font-size:13px}
</style></head><body><main><h1>Constellation API</h1>
<p>The machine-readable document is at <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
<div id="ops">loading…</div></main>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  const root=document.getElementById('ops');root.textContent='';
  const esc=s=>String(s??'').replace(/[&<>]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));
  const byTag={};
  for(const [path,item] of Object.entries(doc.paths)){for(const [m,op] of Object.entries(item)){
    const t=(op.tags||['other'])[0];(byTag[t]=byTag[t]||[]).push([m,path,op]);}}
  for(const [tag,ops] of Object.entries(byTag)){
    const h=document.createElement('h2');h.textContent=tag;root.appendChild(h);
    for(const [m,path,op] of ops){
      const d=document.createElement('details');d.className='op';
      const params=(op.parameters||[]).map(p=>`<li><code>${esc(p.name)}</code> (${esc(p.in)}) ${esc(p.description)}</li>`).join('');
      const resp=Object.entries(op.responses||{}).map(([c,r])=>`<li><code>${esc(c)}</code> ${esc(r.description)}</li>`).join('');
      d.innerHTML=`<summary><span class="m">${m.toUpperCase()}</span><code>${esc(path)}</code> ${esc(op.summary||'')}</summary>`+
        `<p>${esc(op.description||'')}</p>`+(params?`<h3>Parameters</h3><ul>${params}</ul>`:'')+
        (op.requestBody?`<h3>Body</h3><pre>${esc(JSON.stringify(op.requestBody.content,null,1))}</pre>`:'')+
        `<h3>Responses</h3><ul>${resp}</ul>`;
      root.appendChild(d);}}
}).catch(e=>{document.getElementById('ops').textContent='cannot load /openapi.json: '+e});
</script></body></html>
"#;
