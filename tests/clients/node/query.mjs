// The official ClickHouse Node.js client, unchanged, run by the tests against the SQL endpoint.
// Usage: node query.mjs URL USER PASSWORD. Prints one JSON object with what each call returned.
import { createClient } from '@clickhouse/client'

const [url, username, password] = process.argv.slice(2)
// Log level OFF (127): stdout carries only the result.
const client = createClient({ url, username, password, log: { level: 127 } })
const out = {}

async function attempt(name, call) {
  try {
    out[name] = { ok: await call() }
  } catch (error) {
    out[name] = { error: { code: error.code ?? null, type: error.type ?? null, message: error.message } }
  }
}

await attempt('ping', async () => (await client.ping()).success)
await attempt('params', async () => {
  const rs = await client.query({
    query: 'SELECT {n:UInt32} + 1 AS answer, {s:String} AS echo',
    query_params: { n: 41, s: "it's" },
    format: 'JSONEachRow',
  })
  return rs.json()
})
await attempt('stream', async () => {
  const rs = await client.query({ query: 'SELECT number FROM numbers(200000)', format: 'JSONCompactEachRow' })
  let rows = 0
  let sum = 0
  for await (const batch of rs.stream()) {
    for (const row of batch) {
      rows += 1
      sum += Number(row.json()[0])
    }
  }
  return { rows, sum }
})
await attempt('tables', async () => {
  const rs = await client.query({ query: 'SHOW TABLES', format: 'JSONEachRow' })
  return (await rs.json()).map((row) => row.name)
})
await attempt('unknown_table', async () => (await client.query({ query: 'SELECT * FROM no_such_table' })).json())
await attempt('file_function', async () => (await client.query({ query: "SELECT * FROM file('/etc/passwd', 'LineAsString')" })).json())
await client.close()
console.log(JSON.stringify(out))
