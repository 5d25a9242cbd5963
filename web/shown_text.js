// HyperLoRA Studio: the text a node reports after it runs (ui.PreviewText of ComfyUI's V3 API:
// "saved output/loras/..." on Save HyperLoRA and Save Identity, the summary on Generate HyperLoRA
// and Likeness) is shown on the node itself, in a read-only box under its widgets.
//
// The box is made when the first text arrives and is neither saved in the workflow
// (widget.serialize = false keeps widgets_values as they were) nor sent as an input of the prompt
// (options.serialize = false), so saved workflows and the execution cache are unchanged by it.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const SHOWN = "hls_shown_text";

function showText(node, lines) {
  let widget = node.widgets?.find((w) => w.name === SHOWN);
  if (!widget) {
    widget = ComfyWidgets.STRING(node, SHOWN, ["STRING", { multiline: true }], app).widget;
    widget.serialize = false;
    widget.options = widget.options ?? {};
    widget.options.serialize = false;
    if (widget.element) {
      widget.element.readOnly = true;
      widget.element.style.opacity = 0.85;
    }
  }
  widget.value = lines.join("\n");
  // Room for every line (the box takes the node's free height); the node only grows.
  const text = widget.value.split("\n");
  const wanted = node.computeSize()[1] + 16 * Math.max(0, text.length - 1);
  node.setSize([Math.max(node.size[0], 320), Math.max(node.size[1], wanted)]);
  app.graph.setDirtyCanvas(true, false);
}

app.registerExtension({
  name: "HyperLoRAStudio.ShownText",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData.name?.startsWith("HLS_")) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      if (message?.text?.length) showText(this, Array.from(message.text, String));
    };
  },
});
