// Who is signed in: the user, the organization and the permissions of the session.
let current = null;

export function setSession(found) {
  current = found;
}

export function session() {
  return current;
}

/** Whether the session holds `permission` (Blynk's name, e.g. ORG_DEVICES_CONTROL). */
export function may(permission) {
  return Boolean(current?.permissions.includes(permission));
}
