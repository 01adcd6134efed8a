//! STAC Items describing outputs: footprint geometry, projection, raster bands and the COG asset.

use serde_json::{json, Value};

use crate::grid::Grid;

/// Media type of a Cloud-Optimized GeoTIFF asset.
pub const COG_MEDIA_TYPE: &str = "image/tiff; application=geotiff; profile=cloud-optimized";

/// One raster band of the asset.
#[derive(Debug, Clone, PartialEq)]
pub struct StacBand {
    pub name: String,
    pub description: String,
    pub nodata: f64,
    /// `(min, max, mean, std, valid_percent)`, when the band has valid pixels.
    pub statistics: Option<(f64, f64, f64, f64, f64)>,
    /// `(min, max, counts)`.
    pub histogram: Option<(f64, f64, Vec<u64>)>,
}

/// Everything an Item is built from.
#[derive(Debug, Clone)]
pub struct ItemInput<'a> {
    pub id: &'a str,
    pub grid: &'a Grid,
    /// The outline in lon/lat, closed.
    pub outline: &'a [(f64, f64)],
    pub bbox: [f64; 4],
    /// RFC 3339 acquisition time when known, else processing time.
    pub datetime: &'a str,
    pub created: &'a str,
    pub recipe: &'a str,
    pub asset_href: &'a str,
    pub bands: &'a [StacBand],
    /// `(role, href)` of each input.
    pub sources: &'a [(String, String)],
}

/// Builds a STAC 1.0 Item with the projection and raster extensions.
pub fn item(input: &ItemInput<'_>) -> Value {
    let g = input.grid.geotransform;
    let ring: Vec<[f64; 2]> = input.outline.iter().map(|&(x, y)| [x, y]).collect();
    let bands: Vec<Value> = input
        .bands
        .iter()
        .map(|b| {
            let mut v = json!({
                "name": b.name,
                "description": b.description,
                "nodata": b.nodata,
                "data_type": "float32",
            });
            if let Some((min, max, mean, std, valid)) = b.statistics {
                v["statistics"] = json!({
                    "minimum": min, "maximum": max, "mean": mean, "stddev": std,
                    "valid_percent": valid,
                });
            }
            if let Some((min, max, counts)) = &b.histogram {
                v["histogram"] = json!({
                    "count": counts.len(), "min": min, "max": max, "buckets": counts,
                });
            }
            v
        })
        .collect();
    let mut props = json!({
        "datetime": input.datetime,
        "created": input.created,
        "proj:shape": [input.grid.height_px, input.grid.width_px],
        "proj:transform": [g[1], g[2], g[0], g[4], g[5], g[3]],
        "processing:software": { "constellation": env!("CARGO_PKG_VERSION") },
        "constellation:recipe": input.recipe,
    });
    match input.grid.epsg {
        Some(code) => props["proj:code"] = json!(format!("EPSG:{code}")),
        None => props["proj:wkt2"] = json!(input.grid.crs_wkt),
    }
    let links: Vec<Value> = input
        .sources
        .iter()
        .map(|(role, href)| json!({"rel": "derived_from", "href": href, "title": role}))
        .collect();
    json!({
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
        ],
        "id": input.id,
        "geometry": { "type": "Polygon", "coordinates": [ring] },
        "bbox": input.bbox,
        "properties": props,
        "links": links,
        "assets": {
            "data": {
                "href": input.asset_href,
                "type": COG_MEDIA_TYPE,
                "roles": ["data"],
                "raster:bands": bands,
            }
        }
    })
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`2026-11-27T08:43:00Z`).
pub fn rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The acquisition date in a Landsat or Sentinel-2 product name (`…_20191201_…`,
/// `S2A_29RKH_20200219_…`), as RFC 3339 midnight UTC.
pub fn date_from_product_name(name: &str) -> Option<String> {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .flat_map(|tok| {
            // Tokens like 20200219 or 20200219T112221.
            let digits: String = tok.chars().take_while(char::is_ascii_digit).collect();
            (digits.len() == 8).then_some(digits)
        })
        .find_map(|d| {
            let (y, m, day): (u32, u32, u32) = (
                d[..4].parse().ok()?,
                d[4..6].parse().ok()?,
                d[6..].parse().ok()?,
            );
            ((1972..=2100).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&day))
                .then(|| format!("{y:04}-{m:02}-{day:02}T00:00:00Z"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_798_361_000), "2026-12-27T08:43:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn dates_from_names() {
        assert_eq!(
            date_from_product_name("LC08_L2SP_008059_20191201_20200825_02_T1_SR_B4"),
            Some("2019-12-01T00:00:00Z".into())
        );
        assert_eq!(
            date_from_product_name("S2A_29RKH_20200219_0_L2A"),
            Some("2020-02-19T00:00:00Z".into())
        );
        assert_eq!(date_from_product_name("B04"), None);
    }
}
