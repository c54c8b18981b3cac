// The organization's products (Blynk's templates), read once per session and kept.
import { API, get } from "./api.js";

let products = null;

/** Map of template id to the template as `GET /templates` lists it. */
export async function productNames() {
  if (!products) {
    products = (async () => {
      const names = new Map();
      for (let page = 0; ; page += 1) {
        const found = await get(`${API}/templates`, { page, size: 1000 });
        for (const item of found.content) names.set(item.id, item.name);
        if ((page + 1) * 1000 >= found.totalElements) return names;
      }
    })().catch((error) => {
      products = null;
      throw error;
    });
  }
  return products;
}

const templates = new Map();

/** One template with its datastreams, events and metafields (`GET /template`). */
export function template(id) {
  if (!templates.has(id)) {
    templates.set(id, get(`${API}/template`, { templateId: id }).catch((error) => {
      templates.delete(id);
      throw error;
    }));
  }
  return templates.get(id);
}

export function forgetProducts() {
  products = null;
  templates.clear();
}
