document.getElementById("app")!.textContent = "Kizuna";
