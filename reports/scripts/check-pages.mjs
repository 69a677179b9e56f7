// Open each page of a served dashboard build in headless Chromium and report what a reader would
// see go wrong. The checks are console errors, uncaught exceptions, failed or off-host requests,
// Evidence's error and empty-data messages, charts that drew no data and tables without rows.
// Writes a full-page screenshot of each page and prints one JSON object, {"pages": [...]}, with
// one entry per page.
//
// Usage: node scripts/check-pages.mjs CONFIG_JSON
//   CONFIG_JSON: {"baseUrl": "http://127.0.0.1:PORT", "paths": ["/", ...],
//                 "screenshotDir": "/abs/dir", "chromium": "/usr/bin/chromium",
//                 "timeoutMs": 60000}
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

// Texts that Evidence's components show in place of a chart, value or table.
const ERROR_TEXTS = [
	'Dataset is empty',
	'No Records',
	'SQL Error',
	'Catalog Error',
	'Binder Error',
	'Parser Error',
	'Conversion Error',
	'Error in '
];

// Runs in the page: a chart has drawn data when its canvas contains saturated pixels, because the
// axes, grid lines and labels are grey and only the series use the palette's colours.
function inspectPage(errorTexts) {
	const charts = [...document.querySelectorAll('.chart-container')].map((container, index) => {
		const canvas = container.querySelector('.chart canvas');
		if (!canvas || canvas.width === 0 || canvas.height === 0) {
			return { index, drawn: false, reason: 'no canvas' };
		}
		const context = canvas.getContext('2d');
		const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
		let saturated = 0;
		for (let offset = 0; offset < pixels.length; offset += 4) {
			const [red, green, blue, alpha] = pixels.slice(offset, offset + 4);
			if (alpha > 0 && Math.max(red, green, blue) - Math.min(red, green, blue) > 60) saturated++;
		}
		return { index, drawn: saturated > 50, saturatedPixels: saturated };
	});
	const tables = [...document.querySelectorAll('table')].map((table, index) => ({
		index,
		rows: [...table.querySelectorAll('tr')].filter((row) => row.querySelector('td')).length
	}));
	const bodyText = document.body.innerText;
	const errorTextsFound = errorTexts.filter((text) => bodyText.includes(text));
	const errorElements = [...document.querySelectorAll('.bg-red-50, .text-red-600')].map((element) =>
		element.innerText.trim().slice(0, 300)
	);
	return { title: document.title, charts, tables, errorTextsFound, errorElements };
}

async function checkPage(browser, config, pagePath) {
	const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
	const page = await context.newPage();
	const consoleErrors = [];
	const pageErrors = [];
	const failedRequests = [];
	const baseHost = new URL(config.baseUrl).host;

	// Only the served build may be reached: anything else is aborted and reported.
	await page.route('**/*', (route) => {
		const url = new URL(route.request().url());
		if (url.protocol === 'data:' || url.protocol === 'blob:' || url.host === baseHost) {
			return route.continue();
		}
		failedRequests.push(`request to another host: ${url.href}`);
		return route.abort();
	});
	page.on('console', (message) => {
		if (message.type() === 'error') consoleErrors.push(message.text());
	});
	page.on('pageerror', (error) => pageErrors.push(String(error)));
	page.on('requestfailed', (request) => {
		const errorText = request.failure()?.errorText ?? 'failed';
		// Chromium reports Evidence's fetches of prerendered query results (Arrow files) as aborted
		// although the server returns them with status 200, so an abort is no failure here. A
		// missing file shows up as an HTTP error status instead.
		if (errorText === 'net::ERR_ABORTED') return;
		if (new URL(request.url()).host === baseHost) failedRequests.push(`${request.url()}: ${errorText}`);
	});
	page.on('response', (response) => {
		if (response.status() >= 400) failedRequests.push(`${response.url()}: HTTP ${response.status()}`);
	});

	const response = await page.goto(config.baseUrl + pagePath, {
		waitUntil: 'networkidle',
		timeout: config.timeoutMs
	});
	// Charts draw after hydration and an animation: wait until every chart shows data, or give up
	// after the timeout and report the charts that stayed empty.
	let inspection = await page.evaluate(inspectPage, ERROR_TEXTS);
	const deadline = Date.now() + config.timeoutMs;
	while (inspection.charts.some((chart) => !chart.drawn) && Date.now() < deadline) {
		await page.waitForTimeout(500);
		inspection = await page.evaluate(inspectPage, ERROR_TEXTS);
	}
	// Let the last animation frame settle so the screenshot shows the finished charts.
	await page.waitForTimeout(500);

	const name = pagePath.replace(/^\/|\/$/g, '').replace(/[^A-Za-z0-9_-]+/g, '_') || 'index';
	const screenshot = path.join(config.screenshotDir, `${name}.png`);
	await page.screenshot({ path: screenshot, fullPage: true });
	await context.close();

	return {
		path: pagePath,
		status: response ? response.status() : null,
		title: inspection.title,
		charts: inspection.charts,
		emptyCharts: inspection.charts.filter((chart) => !chart.drawn).map((chart) => chart.index),
		tables: inspection.tables,
		emptyTables: inspection.tables.filter((table) => table.rows === 0).map((table) => table.index),
		errorTexts: inspection.errorTextsFound,
		errorElements: inspection.errorElements,
		consoleErrors,
		pageErrors,
		failedRequests,
		screenshot
	};
}

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf-8'));
fs.mkdirSync(config.screenshotDir, { recursive: true });
const browser = await chromium.launch({
	executablePath: config.chromium,
	headless: true,
	args: [
		'--no-sandbox',
		'--disable-background-networking',
		'--disable-component-update',
		'--disable-sync',
		'--disable-default-apps',
		'--disable-domain-reliability',
		'--no-first-run',
		'--no-default-browser-check',
		// Resolve no host name but the served one, so nothing can leave this machine.
		'--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'
	]
});
const pages = [];
try {
	for (const pagePath of config.paths) {
		pages.push(await checkPage(browser, config, pagePath));
	}
} finally {
	await browser.close();
}
process.stdout.write(JSON.stringify({ pages }, null, 2) + '\n');
