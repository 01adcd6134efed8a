// Offline MapLibre style: Natural Earth 1:110m countries from the bundled world-atlas package, no remote resources.
import type { StyleSpecification } from 'maplibre-gl';
import type { FeatureCollection } from 'geojson';
import { feature } from 'topojson-client';
import type { GeometryCollection, Topology } from 'topojson-specification';
import countries_topology from 'world-atlas/countries-110m.json';
import { COLORS } from '../theme';

let countries_geojson: FeatureCollection | null = null;

/** Country polygons as GeoJSON, converted from TopoJSON once. */
export function countriesGeoJson(): FeatureCollection {
  if (!countries_geojson) {
    const topology = countries_topology as unknown as Topology<{ countries: GeometryCollection }>;
    countries_geojson = feature(topology, topology.objects.countries) as FeatureCollection;
  }
  return countries_geojson;
}

export function basemapStyle(): StyleSpecification {
  return {
    version: 8,
    sources: {
      countries: {
        type: 'geojson',
        data: countriesGeoJson(),
        attribution: 'Natural Earth',
      },
    },
    layers: [
      { id: 'ocean', type: 'background', paint: { 'background-color': COLORS.map_ocean } },
      { id: 'land', type: 'fill', source: 'countries', paint: { 'fill-color': COLORS.map_land } },
      {
        id: 'borders',
        type: 'line',
        source: 'countries',
        paint: { 'line-color': COLORS.map_border, 'line-width': 0.6 },
      },
    ],
  };
}
